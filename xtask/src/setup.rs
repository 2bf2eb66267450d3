//! `cargo xtask setup`: installs what the build and the tests need, and only
//! what is missing, so that running it on a prepared machine takes a second.
//!
//! Nothing installed by hand survives a move to a new machine; this is the
//! one place that knows what a machine needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, on_path, probe, run, rustup_has_wasm32, step};

/// Debian packages for building the front end where rustup cannot provide
/// the wasm32 target (see frontend.rs).
const WASM_TOOLCHAIN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld-22"];

/// Debian packages the server's tests run against: a private PostgreSQL
/// cluster, Mosquitto as an external broker, and a headless browser driven
/// over WebDriver.
const TEST_PACKAGES: &[&str] = &["postgresql", "chromium", "chromium-driver", "mosquitto"];

pub fn install_missing(root: &Path) -> Result<()> {
    step("setup: Debian packages", debian_packages)?;
    step("setup: npm packages", || npm_packages(root))?;
    step("setup: wasm-bindgen CLI", || {
        wasm_bindgen_cli(root).map(drop)
    })?;
    step("setup: SMTP server for the e-mail tests", smtp_server).map(drop)?;
    Ok(())
}

/// The real SMTP server the e-mail tests send to: aiosmtpd from PyPI, in a
/// virtual environment of its own (the server's tests find it through
/// [`smtp_python`]'s path).
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

fn smtp_server() -> Result<PathBuf> {
    let venv = cache_dir()?.join("smtpd-venv");
    let python = venv.join("bin/python3");
    let installed = python.exists()
        && Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|out| out.status.success());
    if installed {
        println!("    aiosmtpd present in {}", venv.display());
        return Ok(python);
    }
    if !on_path("python3") {
        install_debian(vec!["python3", "python3-venv"])?;
    }
    if !venv.join("bin/pip").exists() {
        let _ = fs::remove_dir_all(&venv);
        let created = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            // Debian splits ensurepip into python3-venv.
            install_debian(vec!["python3-venv"])?;
            run(
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
                false,
            )?;
        }
    }
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--disable-pip-version-check",
            "--quiet",
            AIOSMTPD,
        ]),
        false,
    )?;
    Ok(python)
}

fn debian_packages() -> Result<()> {
    let mut wanted: Vec<&str> = TEST_PACKAGES.to_vec();
    if rustup_has_wasm32() {
        println!("    rustup has wasm32-unknown-unknown: the Debian Rust toolchain is not needed");
    } else {
        wanted.extend(WASM_TOOLCHAIN_PACKAGES);
    }
    // NodeSource's nodejs brings npm along and conflicts with Debian's npm
    // package, so ask for each only when its command is missing.
    if !on_path("node") {
        wanted.push("nodejs");
    }
    if !on_path("npm") {
        wanted.push("npm");
    }
    install_debian(wanted)
}

/// Installs those of `wanted` that are missing, with one apt-get run.
pub fn install_debian(wanted: Vec<&str>) -> Result<()> {
    if !on_path("dpkg-query") {
        println!(
            "    not a Debian system: make sure these (or their equivalents) are installed: {}",
            wanted.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("    all present");
        return Ok(());
    }
    println!("    missing: {}", missing.join(" "));
    let as_root = probe("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd, false)
    };
    apt(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend(&missing);
    apt(&install)
}

fn installed(package: &str) -> bool {
    probe("dpkg-query", &["-W", "-f=${Status}", package])
        .is_some_and(|status| status.trim() == "install ok installed")
}

/// `npm ci` when node_modules does not match package-lock.json. A copy of
/// the lock file inside node_modules records what was installed; npm's own
/// `.package-lock.json` there is rewritten in a different shape, so it
/// cannot be compared directly.
fn npm_packages(root: &Path) -> Result<()> {
    let frontend = root.join("frontend");
    let lock = fs::read(frontend.join("package-lock.json"))
        .context("frontend/package-lock.json is missing")?;
    let stamp = frontend.join("node_modules/.trackside-package-lock.json");
    let complete = [
        "node_modules/.bin/wasm-opt",
        "node_modules/uplot/dist/uPlot.iife.min.js",
        "node_modules/rapidoc/dist/rapidoc-min.js",
    ]
    .iter()
    .all(|p| frontend.join(p).is_file());
    if complete && fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        println!("    node_modules matches package-lock.json");
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&frontend);
    run(&mut npm, false)?;
    fs::write(&stamp, lock).with_context(|| format!("cannot write {}", stamp.display()))
}

/// Installs the wasm-bindgen CLI of exactly the crate's version into a
/// per-user cache (so a fresh clone on the same machine reuses it: the
/// install compiles for minutes) and returns the binary's path. A matching
/// CLI already on PATH (a container image that installed it) is used as is.
pub fn wasm_bindgen_cli(root: &Path) -> Result<PathBuf> {
    let version = wasm_bindgen_version(root)?;
    if let Some(binary) = matching_wasm_bindgen(&version)? {
        println!("    wasm-bindgen {version} at {}", binary.display());
        return Ok(binary);
    }
    let dir = cached_wasm_bindgen(&version)?;
    println!(
        "    installing wasm-bindgen {version} into {} (takes a few minutes, once)",
        dir.display()
    );
    let mut install = Command::new(cargo());
    // Not --locked: the CLI's own lock file has failed to resolve here.
    install
        .args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &version,
            "--root",
        ])
        .arg(&dir)
        // Outside the workspace, so its .cargo/config.toml does not apply.
        .current_dir(cache_dir()?);
    run(&mut install, false)?;
    matching_wasm_bindgen(&version)?.with_context(|| {
        format!(
            "`cargo install` finished but no wasm-bindgen {version} is in {}",
            dir.display()
        )
    })
}

/// The wasm-bindgen CLI matching Cargo.lock, without installing anything.
pub fn find_wasm_bindgen(root: &Path) -> Result<PathBuf> {
    let version = wasm_bindgen_version(root)?;
    matching_wasm_bindgen(&version)?.with_context(|| {
        format!("wasm-bindgen CLI {version} is not installed: run `cargo xtask setup`")
    })
}

/// The cached CLI, else one on PATH, if it reports exactly `version`.
fn matching_wasm_bindgen(version: &str) -> Result<Option<PathBuf>> {
    let expected = format!("wasm-bindgen {version}");
    let candidates = [
        cached_wasm_bindgen(version)?.join("bin/wasm-bindgen"),
        PathBuf::from("wasm-bindgen"),
    ];
    Ok(candidates
        .into_iter()
        .find(|binary| probe(binary, &["--version"]).is_some_and(|v| v.trim() == expected)))
}

fn cached_wasm_bindgen(version: &str) -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!("wasm-bindgen-{version}")))
}

/// The wasm-bindgen crate's version in Cargo.lock: the CLI must match it
/// exactly or the generated glue does not fit the module.
fn wasm_bindgen_version(root: &Path) -> Result<String> {
    let lock = fs::read_to_string(root.join("Cargo.lock")).context("cannot read Cargo.lock")?;
    let versions = lock_versions(&lock, "wasm-bindgen");
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("Cargo.lock has no wasm-bindgen package; build the workspace once"),
        many => bail!(
            "Cargo.lock has several wasm-bindgen versions {many:?}; \
             the frontend pins one with `=` and everything must agree"
        ),
    }
}

/// Versions of `package` in a Cargo.lock, read without a TOML parser: each
/// `[[package]]` entry starts with its name line, then its version line.
fn lock_versions(lock: &str, package: &str) -> Vec<String> {
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    let mut versions = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() == name_line
            && let Some(version) = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
        {
            versions.push(version.to_owned());
        }
    }
    versions
}

fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let dir = base.join("trackside");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_from_a_lock_file() {
        let lock = r#"
[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "wasm-bindgen-futures"
version = "0.4.80"
"#;
        assert_eq!(lock_versions(lock, "wasm-bindgen"), ["0.2.130"]);
        assert_eq!(lock_versions(lock, "wasm-bindgen-futures"), ["0.4.80"]);
        assert!(lock_versions(lock, "leptos").is_empty());
    }
}

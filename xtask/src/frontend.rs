//! `cargo xtask frontend`: builds the operator app into `target/site/`.
//!
//! Three tools in a row: cargo compiles the app to
//! wasm32, wasm-bindgen writes the JavaScript glue, binaryen's wasm-opt
//! shrinks the module. Then the static files and uPlot are copied beside
//! them, and index.html's references are checked against what was built.
//!
//! Where rustup has the wasm32 target, the ordinary toolchain compiles the
//! app. Where it has not (these machines: rustup cannot download it), the
//! Debian `rustc-web` toolchain does, building std from source (`rust-web-src`)
//! with `-Zbuild-std`, which a stable compiler allows under RUSTC_BOOTSTRAP.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::setup::find_wasm_bindgen;
use crate::util::{cargo, display, file_size, on_path, run, rustup_has_wasm32, size, step};

const TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "wasm-release";
const CRATE: &str = "trackside-frontend";
/// Base name of the glue and module in the site: `trackside.js`,
/// `trackside_bg.wasm`.
const OUT_NAME: &str = "trackside";

/// Files copied from node_modules into the site: the chart pages', and the
/// API reference's renderer (api.html).
const VENDORED: &[&str] = &[
    "uplot/dist/uPlot.iife.min.js",
    "uplot/dist/uPlot.min.css",
    "rapidoc/dist/rapidoc-min.js",
];

pub fn build(root: &Path) -> Result<()> {
    let tools = Tools::find(root)?;
    let wasm = step("frontend: compile to wasm32", || compile(root))?;
    let site = root.join("target/site");
    // Assemble next door and swap at the end, so a server serving the site
    // never sees it half-written.
    let staging = root.join("target/site.new");
    step("frontend: wasm-bindgen + wasm-opt", || {
        recreate(&staging)?;
        let mut bindgen = Command::new(&tools.wasm_bindgen);
        bindgen
            .args([
                "--target",
                "web",
                "--no-typescript",
                "--out-name",
                OUT_NAME,
                "--out-dir",
            ])
            .arg(&staging)
            .arg(&wasm);
        run(&mut bindgen, false)?;
        let module = staging.join(format!("{OUT_NAME}_bg.wasm"));
        let mut opt = Command::new(&tools.wasm_opt);
        opt.arg("-Oz").arg(&module).arg("-o").arg(&module);
        run(&mut opt, false)
    })?;
    step("frontend: static files", || {
        copy_dir(&root.join("public"), &staging)?;
        fs::write(staging.join(ALARM_SOUND), alarm_sound())
            .context("cannot write the alarm sound")?;
        for file in VENDORED {
            let from = root.join("frontend/node_modules").join(file);
            let name = Path::new(file)
                .file_name()
                .expect("vendored paths name files");
            fs::copy(&from, staging.join(name))
                .with_context(|| format!("cannot copy {}", from.display()))?;
        }
        check_references(&staging)?;
        if site.exists() {
            fs::remove_dir_all(&site)
                .with_context(|| format!("cannot remove {}", site.display()))?;
        }
        fs::rename(&staging, &site)
            .with_context(|| format!("cannot move the site to {}", site.display()))
    })?;
    report(&wasm, &site)
}

/// The alarm the app repeats for an unacknowledged high-priority
/// exception, synthesised here (nothing third-party): see [`alarm_sound`].
const ALARM_SOUND: &str = "alarm.wav";

/// One second of a two-tone alarm, 16 kHz, 16-bit mono WAV: 880 Hz then
/// 660 Hz for 0.2 s each with soft edges (no clicks), then silence. The
/// app loops it: a falling pair once a second is heard through a control
/// room's noise without being mistaken for a phone.
fn alarm_sound() -> Vec<u8> {
    const RATE: u32 = 16_000;
    let tone = |hz: f64, seconds: f64| {
        let n = (seconds * f64::from(RATE)) as usize;
        (0..n).map(move |i| {
            let t = i as f64 / f64::from(RATE);
            let edge = (i.min(n - i) as f64 / (0.01 * f64::from(RATE))).min(1.0);
            0.6 * edge * (std::f64::consts::TAU * hz * t).sin()
        })
    };
    let samples: Vec<i16> = tone(880.0, 0.2)
        .chain(tone(660.0, 0.2))
        .chain(std::iter::repeat_n(0.0, (0.6 * f64::from(RATE)) as usize))
        .map(|v| (v * f64::from(i16::MAX)) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

struct Tools {
    wasm_bindgen: PathBuf,
    wasm_opt: PathBuf,
}

impl Tools {
    fn find(root: &Path) -> Result<Self> {
        let tools = Self {
            wasm_bindgen: find_wasm_bindgen(root)?,
            // Binaryen from npm: Debian bookworm's wasm-opt 108 writes a
            // module that fails at start-up with "Table.set(): Argument 1
            // is invalid for table".
            wasm_opt: root.join("frontend/node_modules/.bin/wasm-opt"),
        };
        if !tools.wasm_opt.is_file() {
            bail!(
                "{} is missing: run `cargo xtask setup`",
                tools.wasm_opt.display()
            );
        }
        Ok(tools)
    }
}

/// Compiles the app and returns the path of the `.wasm` file.
fn compile(root: &Path) -> Result<PathBuf> {
    // Its own target directory: the server's builds use another compiler,
    // and sharing one directory makes each rebuild the other's work.
    let target_dir = root.join("target/wasm");
    let mut cmd = if rustup_has_wasm32() {
        let mut cmd = Command::new(cargo());
        cmd.arg("build");
        cmd
    } else {
        debian_cargo()?
    };
    cmd.args([
        "--package",
        CRATE,
        "--bin",
        CRATE,
        "--target",
        TARGET,
        "--profile",
        PROFILE,
    ])
    .env("CARGO_TARGET_DIR", &target_dir)
    .current_dir(root);
    run(&mut cmd, false)?;
    Ok(target_dir
        .join(TARGET)
        .join(PROFILE)
        .join(format!("{CRATE}.wasm")))
}

fn debian_cargo() -> Result<Command> {
    for needed in ["/usr/bin/cargo", "/usr/bin/rustc", "/usr/bin/rust-lld"] {
        if !Path::new(needed).is_file() {
            bail!(
                "{needed} is missing and rustup has no wasm32 target: run `cargo xtask setup` \
                 (or `rustup target add {TARGET}` where rustup can download it)"
            );
        }
    }
    if !Path::new("/usr/lib/rustlib/src/rust/library").is_dir() {
        bail!("the std sources (Debian rust-web-src) are missing: run `cargo xtask setup`");
    }
    println!("    rustup has no {TARGET} target: using Debian's rustc-web with -Zbuild-std");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(PathBuf::from("/usr/bin")).chain(std::env::split_paths(&path)),
    )?;
    let mut cmd = Command::new("/usr/bin/cargo");
    cmd.env("PATH", path)
        // rustup's toolchain choice must not leak into Debian's cargo.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["build", "-Zbuild-std=std,panic_abort"]);
    Ok(cmd)
}

fn recreate(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Fails when index.html names a local file that the site lacks: a typo
/// there shows as a blank page, not a build error.
fn check_references(site: &Path) -> Result<()> {
    let html =
        fs::read_to_string(site.join("index.html")).context("public/index.html is missing")?;
    let references = local_references(&html);
    let missing: Vec<&str> = references
        .iter()
        .copied()
        .filter(|r| !site.join(r.trim_start_matches('/')).is_file())
        .collect();
    if !missing.is_empty() {
        bail!("index.html refers to files the build did not produce: {missing:?}");
    }
    println!(
        "    index.html: all {} local references present",
        references.len()
    );
    Ok(())
}

/// The site-relative paths in `href="…"`, `src="…"` and `from "…"`
/// (a module import). Good enough for a hand-written index.html.
fn local_references(html: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for opener in ["href=\"", "src=\"", "from \"", "import(\""] {
        let mut rest = html;
        while let Some(start) = rest.find(opener) {
            rest = &rest[start + opener.len()..];
            let Some(end) = rest.find('"') else { break };
            let reference = rest[..end].split(['?', '#']).next().unwrap_or_default();
            let external =
                reference.contains("://") || reference.starts_with("data:") || reference.is_empty();
            if !external {
                found.push(reference);
            }
            rest = &rest[end..];
        }
    }
    found
}

fn report(wasm: &Path, site: &Path) -> Result<()> {
    println!("    compiled module: {}", size(file_size(wasm)?));
    let mut files: Vec<PathBuf> = fs::read_dir(site)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut total = 0;
    for file in &files {
        let bytes = file_size(file)?;
        total += bytes;
        let gzipped = gzipped_size(file).map(|g| format!(" ({} gzipped)", size(g)));
        println!(
            "    target/site/{:<28} {:>10}{}",
            file.file_name().unwrap_or_default().to_string_lossy(),
            size(bytes),
            gzipped.unwrap_or_default()
        );
    }
    println!("    total {}", size(total));
    Ok(())
}

/// What the file costs over a gzip-compressing server; `None` when gzip is
/// not installed.
fn gzipped_size(file: &Path) -> Option<u64> {
    if !on_path("gzip") {
        return None;
    }
    let mut cmd = Command::new("gzip");
    cmd.args(["-9", "-c"])
        .arg(file)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    match cmd.output() {
        Ok(out) if out.status.success() => Some(out.stdout.len() as u64),
        _ => {
            eprintln!("    (could not run `{}`)", display(&cmd));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_sound_is_a_one_second_pcm_wav() {
        let wav = alarm_sound();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        let data = u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]) as usize;
        assert_eq!(data, 16_000 * 2, "one second of 16 kHz 16-bit");
        assert_eq!(wav.len(), 44 + data);
        // Loud while it sounds, silent after.
        let sample = |i: usize| i16::from_le_bytes([wav[44 + 2 * i], wav[45 + 2 * i]]);
        assert!((0..3_200).map(sample).any(|s| s > 15_000));
        assert!((8_000..16_000).map(sample).all(|s| s == 0));
    }

    #[test]
    fn finds_local_references_in_index_html() {
        let html = r#"<link rel="stylesheet" href="/style.css?v=1">
            <link rel="icon" href="favicon.svg"><a href="https://example.org/">x</a>
            <script type="module">import init from "/trackside.js"; init();</script>
            <img src="data:image/png;base64,AA">"#;
        assert_eq!(
            local_references(html),
            ["/style.css", "favicon.svg", "/trackside.js"]
        );
    }
}

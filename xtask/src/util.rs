//! Running commands and reporting progress, one line per step.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Runs `body` as a named step: one line when it starts, one when it ends.
pub fn step<T>(name: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let started = Instant::now();
    let result = body().with_context(|| format!("step `{name}` failed"));
    if result.is_ok() {
        println!(
            "    {name}: done in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    result
}

/// Runs a command with its output on the terminal and fails unless it
/// exits 0. Without `interactive` stdin is closed: CI has none, and a tool
/// that stops to ask a question must fail rather than hang.
pub fn run(cmd: &mut Command, interactive: bool) -> Result<()> {
    println!("    $ {}", display(cmd));
    if !interactive {
        cmd.stdin(Stdio::null());
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!("`{}` exited with {status}", display(cmd));
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout, or `None` when it cannot
/// start or fails: for probes such as "is this installed?".
pub fn probe(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The cargo that runs xtask, so every step uses the same toolchain.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether rustup can build for wasm32 directly (a developer laptop),
/// which makes the Debian toolchain unnecessary.
pub fn rustup_has_wasm32() -> bool {
    probe("rustup", &["target", "list", "--installed"]).is_some_and(|targets| {
        targets
            .lines()
            .any(|t| t.trim() == "wasm32-unknown-unknown")
    })
}

pub fn display(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Human-readable size, for the build report.
pub fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

pub fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len())
}

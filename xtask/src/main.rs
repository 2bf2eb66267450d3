//! Trackside's build system, run as `cargo xtask <command>`.
//!
//! Plain Rust instead of shell scripts or a Makefile: it runs wherever cargo
//! does, fails with a message that says what to do, and the front end's odd
//! toolchain (see `frontend.rs`) is explained next to the code that uses it.

mod frontend;
mod fuzz;
mod setup;
mod tidy;
mod util;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::util::{cargo, run, step};

const HELP: &str = "\
usage: cargo xtask <command>

commands:
  setup            install what is missing: Debian packages, npm packages,
                   the wasm-bindgen CLI matching Cargo.lock
  frontend         build the operator app into target/site/
  demo [args...]   setup, frontend, then run the server with --demo [args...]
  test             setup, frontend, fmt check, clippy, tests (what CI runs)
  bench-ingest [args...]
                   ingest benchmark against Mosquitto and psql in one run
                   (server/examples/ingest_bench.rs lists the args)
  bench-history [args...]
                   seed a week of 1 Hz readings for 100 channels in a private
                   PostgreSQL and measure GET /api/history against its bare
                   SQL (about 10 minutes; --reuse keeps the seed, --help)
  bench-ui [args...]
                   build the app, seed a week of 8 channels, and time the
                   history page in headless Chromium (first chart, a preset,
                   a drag-zoom, frames under a live tail) against a bare
                   uPlot page drawing the same points (--reuse, --help)
  bench-export [args...]
                   seed 10 million readings in a private PostgreSQL and export
                   them as CSV from a release server against psql's COPY, with
                   the server's peak memory (--reuse keeps the seed, --help)
  bench-replay [args...]
                   a day of a 200-circuit yard in a private PostgreSQL:
                   GET /api/replay against its bare read and against fetching
                   every relay reading, then playback at 60x in headless
                   Chromium against the same page paused (--help)
  modules          print which server modules import which (the layering
                   that the tidy tests hold)
  fuzz [target] [--seconds N]
                   run each decoder's fuzz target (or the named one) for
                   N seconds (default 60), installing cargo-fuzz if missing
  help             this text";

fn main() -> ExitCode {
    match dispatch(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: Vec<String>) -> Result<()> {
    let root = repo_root();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    // `cargo xtask bench-… -- --flag` passes the `--` on; the commands'
    // own parsers would take it for an argument.
    let rest = rest.strip_prefix(&["--".to_owned()]).unwrap_or(rest);
    if !matches!(
        command,
        "demo"
            | "bench-ingest"
            | "bench-history"
            | "bench-ui"
            | "bench-export"
            | "bench-replay"
            | "fuzz"
    ) && !rest.is_empty()
    {
        bail!("`{command}` takes no arguments, got {rest:?}\n\n{HELP}");
    }
    match command {
        "setup" => setup::install_missing(&root),
        "frontend" => frontend::build(&root),
        "demo" => demo(&root, rest),
        "test" => test(&root),
        "bench-ingest" => bench_ingest(&root, rest),
        "bench-history" => bench_history(&root, rest),
        "bench-ui" => bench_ui(&root, rest),
        "bench-export" => bench_export(&root, rest),
        "bench-replay" => bench_replay(&root, rest),
        "fuzz" => fuzz::run_targets(&root, rest),
        "modules" => {
            print_module_graph(&root);
            Ok(())
        }
        "help" | "-h" | "--help" => {
            println!("{HELP}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

/// Runs a `cargo test` with its output passed through, then prints the
/// totals of all its test binaries on one line: cargo's own last line is
/// the last binary's (often doc tests with 0 tests), which says nothing of
/// the run.
fn run_tests(cmd: &mut Command) -> Result<()> {
    println!("    $ {}", util::display(cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let mut totals = TestCounts::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading cargo test's output")?;
            println!("{line}");
            if let Some(counts) = TestCounts::parse(&line) {
                totals.add(counts);
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("`{}` exited with {status}", util::display(cmd));
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
struct TestCounts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestCounts {
    /// Reads libtest's `test result: ok. 15 passed; 0 failed; 2 ignored; ...`.
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("test result: ")?;
        let mut counts = Self::default();
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(number)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => counts.passed = number,
                "failed" => counts.failed = number,
                "ignored" => counts.ignored = number,
                _ => {}
            }
        }
        Some(counts)
    }

    fn add(&mut self, other: Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// One line per server module: what it imports of the crate's own.
fn print_module_graph(root: &Path) {
    let graph = tidy::server_module_graph(root);
    for (module, targets) in &graph {
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        println!("{module:>13} -> {}", targets.join(", "));
    }
    match tidy::layering_cycle(&graph) {
        Some(cycle) => println!("circle: {}", cycle.join(" -> ")),
        None => println!("no circles but http and the handlers it mounts"),
    }
}

fn repo_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

fn demo(root: &Path, args: &[String]) -> Result<()> {
    setup::install_missing(root)?;
    frontend::build(root)?;
    step("demo: server", || {
        let mut server = Command::new(cargo());
        server
            .args(["run", "--release", "--package", "trackside", "--", "--demo"])
            .args(args)
            .current_dir(root);
        // The demo is interactive: keep the terminal's stdin so Ctrl-C and
        // any prompt reach the server.
        run(&mut server, true)
    })
}

fn bench_ingest(root: &Path, args: &[String]) -> Result<()> {
    step("bench: Debian packages", || {
        setup::install_debian(vec!["postgresql", "mosquitto"])
    })?;
    run_server_bench(root, "ingest_bench", args)
}

/// Benchmarks that measure a release Trackside in its own process (its
/// memory and CPU are what they measure): the binary and the example are
/// built together, then the example runs.
fn run_server_bench(root: &Path, example: &str, args: &[String]) -> Result<()> {
    step("bench: build", || {
        let mut build = Command::new(cargo());
        build
            .args(["build", "--release", "--package", "trackside"])
            .args(["--bin", "trackside", "--example", example])
            .current_dir(root);
        run(&mut build, false)
    })?;
    step("bench: run", || {
        let mut bench = Command::new(root.join("target/release/examples").join(example));
        bench.args(args).current_dir(root);
        run(&mut bench, false)
    })
}

/// A command, not a test: it takes minutes, needs quiet cores to mean
/// anything, and prints figures for a person to read.
fn bench_history(root: &Path, args: &[String]) -> Result<()> {
    step("bench: history", || {
        let mut bench = Command::new(cargo());
        bench
            .args([
                "run",
                "--release",
                "--package",
                "trackside",
                "--example",
                "history-bench",
                "--",
            ])
            .args(args)
            .current_dir(root);
        run(&mut bench, false)
    })
}

/// The app as an operator's browser runs it: needs the built app and
/// Chromium, as the browser tests do.
fn bench_ui(root: &Path, args: &[String]) -> Result<()> {
    setup::install_missing(root)?;
    frontend::build(root)?;
    step("bench: ui", || {
        let mut bench = Command::new(cargo());
        bench
            .args([
                "run",
                "--release",
                "--package",
                "trackside",
                "--example",
                "ui-bench",
                "--",
            ])
            .args(args)
            .current_dir(root);
        run(&mut bench, false)
    })
}

fn bench_export(root: &Path, args: &[String]) -> Result<()> {
    step("bench: Debian packages", || {
        setup::install_debian(vec!["postgresql"])
    })?;
    run_server_bench(root, "export-bench", args)
}

/// The app must be built: the benchmark plays a replay in Chromium.
fn bench_replay(root: &Path, args: &[String]) -> Result<()> {
    setup::install_missing(root)?;
    frontend::build(root)?;
    step("bench: replay", || {
        let mut bench = Command::new(cargo());
        bench
            .args([
                "run",
                "--release",
                "--package",
                "trackside",
                "--example",
                "replay-bench",
                "--",
            ])
            .args(args)
            .current_dir(root);
        run(&mut bench, false)
    })
}

fn test(root: &Path) -> Result<()> {
    setup::install_missing(root)?;
    frontend::build(root)?;
    let cargo_step = |name: &str, args: &[&str], advice: &str| {
        step(name, || {
            let mut cmd = Command::new(cargo());
            cmd.args(args).current_dir(root);
            run(&mut cmd, false).map_err(|e| e.context(advice.to_owned()))
        })
    };
    cargo_step(
        "test: formatting",
        &["fmt", "--all", "--", "--check"],
        "formatting differs from rustfmt's: run `cargo fmt --all`",
    )?;
    // The fuzz crate is a workspace of its own, outside `--all`.
    cargo_step(
        "test: formatting of fuzz/",
        &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
        "formatting differs from rustfmt's: run `cargo fmt --manifest-path fuzz/Cargo.toml`",
    )?;
    cargo_step(
        "test: clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        "clippy found problems (listed above)",
    )?;
    step("test: cargo test", || {
        let mut cmd = Command::new(cargo());
        cmd.args(["test", "--workspace"]).current_dir(root);
        // Tests that need root (mounting a small filesystem to fill it) are
        // #[ignore]d with the reason; as root (CI) they run, otherwise the
        // summary counts them as skipped and libtest names them.
        if running_as_root() {
            cmd.args(["--", "--include-ignored"]);
        } else {
            println!("    not root: tests that need root are skipped (marked `ignored` below)");
        }
        run_tests(&mut cmd).map_err(|e| e.context("tests failed (listed above)"))
    })?;
    println!("\nxtask: all checks passed");
    Ok(())
}

/// Whether this process runs as root (its effective uid is 0).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            uids.split_whitespace()
                .nth(2)
                .map(|effective| effective == "0")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_summaries() {
        assert_eq!(
            TestCounts::parse(
                "test result: ok. 15 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 23.76s"
            ),
            Some(TestCounts {
                passed: 15,
                failed: 1,
                ignored: 2
            })
        );
        assert_eq!(TestCounts::parse("running 15 tests"), None);
    }
}

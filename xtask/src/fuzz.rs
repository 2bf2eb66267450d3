//! `cargo xtask fuzz [target] [--seconds N]`: runs the decoders' fuzz
//! targets (`fuzz/`, cargo-fuzz layout) one after the other and prints one
//! line of figures per target.
//!
//! cargo-fuzz drives the build through flags that stable rustc keeps behind
//! `RUSTC_BOOTSTRAP=1`; with that set, the ordinary stable toolchain builds
//! and runs the targets, so no nightly is needed here or in CI.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::util::{cargo, display, probe, run, step};

const DEFAULT_SECONDS: u64 = 60;

pub fn run_targets(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    step("fuzz: cargo-fuzz", install_cargo_fuzz)?;
    let all = list_targets(root)?;
    let targets = match &options.target {
        Some(name) if all.contains(name) => vec![name.clone()],
        Some(name) => bail!("no fuzz target `{name}`; the targets are {all:?}"),
        None => all,
    };
    step("fuzz: build", || run(&mut cargo_fuzz(root, "build"), false))?;
    let mut runs = Vec::new();
    for target in &targets {
        let stats = step(&format!("fuzz: {target}"), || {
            fuzz_one(root, target, options.seconds)
        })?;
        runs.push((target, stats));
    }
    println!("\nfuzz: {} s per target", options.seconds);
    for (target, stats) in &runs {
        println!("  {target:<12} {}", stats.summary());
    }
    let crashed: Vec<_> = runs
        .iter()
        .filter(|(_, stats)| !stats.clean)
        .map(|(target, _)| target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!(
            "fuzz targets {crashed:?} failed; reproduce with \
             `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> <artifact>`"
        );
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
struct Options {
    target: Option<String>,
    seconds: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self {
            target: None,
            seconds: DEFAULT_SECONDS,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let seconds = match arg.strip_prefix("--seconds") {
                Some("") => args.next().map(String::as_str),
                Some(rest) => rest.strip_prefix('='),
                None if arg.starts_with('-') || options.target.is_some() => {
                    bail!("usage: cargo xtask fuzz [target] [--seconds N], got {arg:?}")
                }
                None => {
                    options.target = Some(arg.clone());
                    continue;
                }
            };
            options.seconds = seconds
                .and_then(|s| s.parse().ok())
                .filter(|&s| s > 0)
                .context("--seconds takes a whole number of seconds above 0")?;
        }
        Ok(options)
    }
}

fn install_cargo_fuzz() -> Result<()> {
    if let Some(version) = probe(cargo(), &["fuzz", "--version"]) {
        println!("    {}", version.lines().next().unwrap_or_default());
        return Ok(());
    }
    println!("    installing cargo-fuzz (about 2 minutes, once)");
    run(
        Command::new(cargo()).args(["install", "cargo-fuzz", "--locked"]),
        false,
    )
}

/// `cargo fuzz <subcommand>` as every step runs it. No sanitizer: the
/// decoders are safe Rust, so what there is to find are panics and broken
/// invariants; AddressSanitizer would slow every run and the build for
/// memory errors safe code cannot make.
fn cargo_fuzz(root: &Path, subcommand: &str) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.args(["fuzz", subcommand, "--sanitizer", "none"])
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(root);
    cmd
}

fn list_targets(root: &Path) -> Result<Vec<String>> {
    let mut list = Command::new(cargo());
    list.args(["fuzz", "list"]).current_dir(root);
    let output = list
        .output()
        .with_context(|| format!("cannot run `{}`", display(&list)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed: {}",
            display(&list),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Runs one target for `seconds` on its corpus (`fuzz/corpus/<target>`,
/// seeded with our own payload examples), passing libFuzzer's messages
/// through without its per-input progress lines.
fn fuzz_one(root: &Path, target: &str, seconds: u64) -> Result<FuzzStats> {
    let mut cmd = cargo_fuzz(root, "run");
    cmd.arg(target)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!(
            "-dict={}",
            root.join("fuzz/trackside.dict").display()
        ))
        // An input that takes seconds is a bug too (a gateway could stall
        // ingest with it).
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    println!("    $ {}", display(&cmd));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", display(&cmd)))?;
    let mut stats = FuzzStats::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading libFuzzer's output")?;
            if !is_progress(&line) {
                eprintln!("{line}");
            }
            stats.read(&line);
        }
    }
    stats.clean = child.wait().context("waiting for cargo fuzz")?.success();
    Ok(stats)
}

/// libFuzzer's per-input lines (`#1234 NEW ...`, new functions) and the
/// dictionary it recommends at the end: thousands of lines that say
/// nothing the summary does not.
fn is_progress(line: &str) -> bool {
    line.starts_with(['#', '"', '\t'])
}

/// libFuzzer's figures for one run, read from its output.
#[derive(Debug, Default, PartialEq)]
struct FuzzStats {
    runs: u64,
    execs_per_sec: u64,
    coverage: u64,
    features: u64,
    corpus: u64,
    artifact: Option<String>,
    clean: bool,
}

impl FuzzStats {
    fn read(&mut self, line: &str) {
        if let Some((key, value)) = line.strip_prefix("stat::").and_then(|s| s.split_once(':')) {
            let value = value.trim().parse().unwrap_or_default();
            match key {
                "number_of_executed_units" => self.runs = value,
                "average_exec_per_sec" => self.execs_per_sec = value,
                _ => {}
            }
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            self.artifact = Some(path.trim().to_owned());
        } else if line.starts_with('#') {
            // `#1234  NEW    cov: 812 ft: 2345 corp: 210/10Kb ...`
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                let number = || {
                    words
                        .clone()
                        .next()
                        .and_then(|n| n.split('/').next()?.parse().ok())
                };
                match word {
                    "cov:" => self.coverage = number().unwrap_or(self.coverage),
                    "ft:" => self.features = number().unwrap_or(self.features),
                    "corp:" => self.corpus = number().unwrap_or(self.corpus),
                    _ => {}
                }
            }
        }
    }

    fn summary(&self) -> String {
        let outcome = match (&self.artifact, self.clean) {
            (None, true) => "crashes 0".to_owned(),
            (Some(artifact), _) => format!("crashes 1: {artifact}"),
            (None, false) => "FAILED (see the output above)".to_owned(),
        };
        format!(
            "{:>10} runs {:>7}/s  cov {:>5}  ft {:>6}  corpus {:>5}  {outcome}",
            self.runs, self.execs_per_sec, self.coverage, self.features, self.corpus
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_target_and_seconds() {
        let parse = |text: &str| Options::parse(&args(text));
        assert_eq!(
            parse("").unwrap(),
            Options {
                target: None,
                seconds: DEFAULT_SECONDS
            }
        );
        assert_eq!(
            parse("senml --seconds 15").unwrap(),
            Options {
                target: Some("senml".into()),
                seconds: 15
            }
        );
        assert_eq!(parse("--seconds=5").unwrap().seconds, 5);
        assert!(parse("--seconds").is_err());
        assert!(parse("--seconds 0").is_err());
        assert!(parse("senml status").is_err());
        assert!(parse("--minutes 1").is_err());
    }

    #[test]
    fn reads_libfuzzer_figures() {
        let mut stats = FuzzStats::default();
        for line in [
            "#2\tINITED cov: 210 ft: 211 corp: 4/520b exec/s: 0 rss: 40Mb",
            "#524288\tpulse  cov: 812 ft: 2345 corp: 210/10Kb lim: 4096 exec/s: 17476 rss: 61Mb",
            "INFO: a line without figures",
            "stat::number_of_executed_units: 1048576",
            "stat::average_exec_per_sec:     17476",
            "stat::new_units_added:          206",
        ] {
            assert_eq!(is_progress(line), line.starts_with('#'), "{line}");
            stats.read(line);
        }
        stats.clean = true;
        assert_eq!(
            stats,
            FuzzStats {
                runs: 1_048_576,
                execs_per_sec: 17_476,
                coverage: 812,
                features: 2345,
                corpus: 210,
                artifact: None,
                clean: true,
            }
        );
        assert!(
            stats.summary().ends_with("crashes 0"),
            "{}",
            stats.summary()
        );
        stats.read("artifact_prefix='fuzz/artifacts/senml/'; Test unit written to fuzz/artifacts/senml/crash-da39a3");
        stats.clean = false;
        assert!(
            stats
                .summary()
                .ends_with("crashes 1: fuzz/artifacts/senml/crash-da39a3")
        );
    }
}

//! `trackside layout check FILE`: the same checks as `PUT /api/layout`,
//! before a file reaches a control room.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use trackside::yard::layout;

use super::serve::{ServeArgs, load_config, open_database};

#[derive(Args)]
pub struct LayoutArgs {
    #[command(subcommand)]
    action: LayoutAction,
}

#[derive(Subcommand)]
enum LayoutAction {
    /// Check a layout file: its syntax, geometry, points and routes, and
    /// that every circuit it draws is declared in a [[circuit]] (or, with
    /// --database, known to the server). Problems are listed with their
    /// line; the exit status is non-zero when there are any.
    Check {
        file: PathBuf,
        /// Also count the circuits the server's database knows as declared
        /// (uses the same configuration as `serve`).
        #[arg(long)]
        database: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

pub async fn layout(args: LayoutArgs) -> anyhow::Result<()> {
    let LayoutAction::Check {
        file,
        database,
        serve,
    } = args.action;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let known: HashSet<String> = if database {
        let config = load_config(&serve)?;
        let (pool, _private_pg) = open_database(&config).await?;
        let circuits: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT circuit FROM channels")
            .fetch_all(&pool)
            .await
            .context("reading the known circuits")?;
        pool.close().await;
        circuits.into_iter().map(|(c,)| c).collect()
    } else {
        HashSet::new()
    };
    match layout::check(&text, &|circuit| known.contains(circuit)) {
        Ok(checked) => {
            println!(
                "{}: ok: {} circuits, {} sections, {} points, {} signals, {} labels, {} routes",
                file.display(),
                checked.circuits.len(),
                checked.sections.len(),
                checked.points.len(),
                checked.signals.len(),
                checked.labels.len(),
                checked.routes.len()
            );
            Ok(())
        }
        Err(problems) => {
            for problem in &problems {
                match problem.line {
                    Some(line) => eprintln!("{}:{line}: {}", file.display(), problem.message),
                    None => eprintln!("{}: {}", file.display(), problem.message),
                }
            }
            anyhow::bail!(
                "{} problem{} in {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                file.display()
            )
        }
    }
}

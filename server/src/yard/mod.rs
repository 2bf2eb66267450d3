//! The yard's geometry and its past, for the operators' diagram.
//!
//! Operators think in the yard's geometry, and the first question after an
//! exception is what was moving there and when. So the layout is a file an
//! admin can check before a control room draws it ([`layout`]); replay
//! answers that question from the stored relay states in one database
//! query per request ([`replay`]); and movements are read from the same
//! changes with the layout's connections ([`movement`]), so what the
//! diagram animates and what a circuit's panel lists cannot disagree.
//!
//! The layout lives in a file (`yard.layout`, or `layout.toml` in the data
//! directory) because that is what an admin versions, diffs and checks with
//! `trackside layout check`; replacing it from the app writes the same file.

mod http;
pub mod layout;
pub mod movement;
pub mod replay;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use trackside_wire::{Layout, LayoutProblem};

pub use http::{Api, router};

/// Replays and movement lists running at once; more wait their turn, so a
/// few long replays cannot take every database connection.
const CONCURRENT_REPLAYS: usize = 4;

/// The layout in force and where it is kept.
pub struct YardLayout {
    path: PathBuf,
    current: RwLock<Current>,
    permits: Semaphore,
    /// One replacement at a time: write, rename, swap.
    replacing: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone)]
struct Current {
    layout: Option<Arc<Layout>>,
    source: Option<Arc<str>>,
    /// Why the file on disk is not in force, when it is not.
    problems: Vec<LayoutProblem>,
}

impl YardLayout {
    /// Loads the layout at `path` if there is one. A file with problems is
    /// logged and kept out of force: telemetry must not stop for a
    /// drawing, and `GET /api/layout` says what is wrong.
    pub fn load(path: PathBuf, known: &dyn Fn(&str) -> bool) -> Arc<Self> {
        let mut current = Current::default();
        match std::fs::read_to_string(&path) {
            Ok(text) => match layout::check(&text, known) {
                Ok(layout) => {
                    tracing::info!(
                        path = %path.display(),
                        circuits = layout.circuits.len(),
                        sections = layout.sections.len(),
                        "yard layout loaded"
                    );
                    current.layout = Some(Arc::new(layout));
                    current.source = Some(text.into());
                }
                Err(problems) => {
                    tracing::error!(
                        path = %path.display(),
                        "the yard layout has problems and is not shown:\n{}",
                        layout::describe(&problems)
                    );
                    current.problems = problems;
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no yard layout; the diagram waits for one");
            }
            Err(err) => {
                tracing::error!(path = %path.display(), "cannot read the yard layout: {err}");
                current.problems = vec![LayoutProblem {
                    line: None,
                    message: format!("cannot read {}: {err}", path.display()),
                }];
            }
        }
        Arc::new(Self {
            path,
            current: RwLock::new(current),
            permits: Semaphore::new(CONCURRENT_REPLAYS),
            replacing: tokio::sync::Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn layout(&self) -> Option<Arc<Layout>> {
        self.read().layout.clone()
    }

    fn read(&self) -> Current {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks `text` and, when it passes, writes it to the layout file
    /// (a temporary file renamed over it, the old one kept as
    /// `*.previous`) and puts it in force.
    pub async fn replace(
        &self,
        text: String,
        known: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Result<Arc<Layout>, Vec<LayoutProblem>>, anyhow::Error> {
        let layout = match layout::check(&text, known) {
            Ok(layout) => Arc::new(layout),
            Err(problems) => return Ok(Err(problems)),
        };
        let _one_at_a_time = self.replacing.lock().await;
        let path = self.path.clone();
        let body = text.clone();
        tokio::task::spawn_blocking(move || write_replacing(&path, &body))
            .await
            .context("layout writer task")??;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Current {
            layout: Some(layout.clone()),
            source: Some(text.into()),
            problems: Vec::new(),
        };
        tracing::info!(path = %self.path.display(), "yard layout replaced");
        Ok(Ok(layout))
    }
}

/// Writes `text` to `path` so that a reader sees the old file or the new
/// one, never half of either; the old one is kept beside it.
fn write_replacing(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let temporary = path.with_extension("toml.partial");
    std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
    if path.exists() {
        let previous = path.with_extension("toml.previous");
        std::fs::copy(path, &previous)
            .with_context(|| format!("keeping the old layout as {}", previous.display()))?;
    }
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Where the layout is kept: `yard.layout`, or `layout.toml` in the data
/// directory.
pub fn layout_path(configured: Option<&Path>, data_dir: &Path) -> PathBuf {
    configured.map_or_else(|| data_dir.join("layout.toml"), Path::to_path_buf)
}

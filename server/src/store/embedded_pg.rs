//! A private PostgreSQL cluster for running without a database URL.
//!
//! The cluster lives in `<data_dir>/postgres`, listens on a unix socket in
//! that directory only (no TCP port, so nothing else on the machine can reach
//! it and two instances never collide), and is stopped when the handle drops.
//! `initdb` refuses to run as root, so a root process runs the PostgreSQL
//! binaries as the `postgres` system user that Debian's package creates.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, bail};
use sqlx::postgres::PgConnectOptions;

/// The database superuser the private cluster is created with.
pub const SUPERUSER: &str = "trackside";
/// The socket file is named after the port, so any fixed value works: the
/// socket directory is private to this cluster.
const PORT: u16 = 5432;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on commit: the product's default.
    Durable,
    /// No fsync: for throwaway clusters in tests, where speed matters and a
    /// power cut loses nothing of value.
    Throwaway,
}

pub struct EmbeddedPostgres {
    pgdata: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<nix::unistd::User>,
    stopped: bool,
    /// False when an already running cluster was adopted: dropping the
    /// handle then leaves it running (a CLI command beside a live server).
    started_here: bool,
}

impl EmbeddedPostgres {
    /// Creates the cluster on first use, then starts it (or adopts one that a
    /// killed earlier run left running).
    pub fn start(
        data_dir: &Path,
        bin_dir: Option<&Path>,
        durability: Durability,
    ) -> anyhow::Result<Self> {
        let bin_dir = match bin_dir {
            Some(dir) => dir.to_path_buf(),
            None => find_bin_dir()?,
        };
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .context("looking up the postgres system user")?
                .context(
                    "running as root, and initdb refuses root: install Debian's postgresql package \
                     (it creates the `postgres` user) or run Trackside as an ordinary user",
                )?;
            Some(user)
        } else {
            None
        };
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", data_dir.display()))?;
        let pgdata = data_dir.join("postgres");
        let socket_path_len = pgdata.as_os_str().len() + ".s.PGSQL.5432".len() + 1;
        if socket_path_len > 100 {
            bail!(
                "data directory {} is too deep for a unix socket path (limit about 100 bytes): \
                 choose a shorter --data-dir",
                data_dir.display()
            );
        }
        let this = Self {
            pgdata,
            bin_dir,
            run_as,
            stopped: false,
            started_here: true,
        };
        let mut this = this;
        if let Some(user) = &this.run_as {
            // The postgres user must be able to walk into the data directory;
            // it needs to search it, not list it.
            let mut perms = std::fs::metadata(&data_dir)?.permissions();
            perms.set_mode(perms.mode() | 0o111);
            std::fs::set_permissions(&data_dir, perms)?;
            std::fs::create_dir_all(&this.pgdata)?;
            std::os::unix::fs::chown(
                &this.pgdata,
                Some(user.uid.as_raw()),
                Some(user.gid.as_raw()),
            )
            .with_context(|| format!("giving {} to the postgres user", this.pgdata.display()))?;
        }
        if !this.pgdata.join("PG_VERSION").exists() {
            this.init(durability)?;
        }
        if this.pg_ctl(&["status"])?.status.success() {
            tracing::info!(pgdata = %this.pgdata.display(), "private PostgreSQL already running; using it");
            this.started_here = false;
        } else {
            let log = this.pgdata.join("server.log");
            let out = this.pg_ctl(&["-w", "-t", "60", "-l", path_str(&log)?, "start"])?;
            if !out.status.success() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                bail!(
                    "private PostgreSQL did not start: {}\n{}\nlast lines of {}:\n{}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim(),
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        tracing::info!(pgdata = %this.pgdata.display(), "private PostgreSQL running");
        Ok(this)
    }

    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.pgdata)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
    }

    /// Stops the cluster, waiting for it to shut down cleanly.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        // Fast (roll back sessions, checkpoint) within a few seconds, else
        // immediate (crash recovery at the next start): a shutdown must end.
        let out = self.pg_ctl(&["-w", "-t", "4", "-m", "fast", "stop"])?;
        if !out.status.success() {
            tracing::warn!(
                "private PostgreSQL did not stop within 4 s ({}); stopping it immediately",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            let out = self.pg_ctl(&["-w", "-t", "4", "-m", "immediate", "stop"])?;
            if !out.status.success() {
                bail!(
                    "pg_ctl stop failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        tracing::info!("private PostgreSQL stopped");
        Ok(())
    }

    fn init(&self, durability: Durability) -> anyhow::Result<()> {
        tracing::info!(pgdata = %self.pgdata.display(), "creating private PostgreSQL cluster");
        let mut args = vec![
            "-D",
            path_str(&self.pgdata)?,
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ];
        if durability == Durability::Throwaway {
            args.push("--no-sync");
        }
        let out = self.command("initdb").args(&args).output()?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // Settings go into the config file rather than pg_ctl's -o string,
        // which pg_ctl hands to a shell: a path with a space would break it.
        let socket_dir = path_str(&self.pgdata)?.replace('\'', "''");
        let mut conf = format!(
            "\n# Trackside private cluster\nlisten_addresses = ''\nunix_socket_directories = '{socket_dir}'\nport = {PORT}\nmax_connections = 200\n"
        );
        if durability == Durability::Throwaway {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf_path = self.pgdata.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path)?;
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing)?;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(&self.pgdata).args(args);
        // Its own process group, so a Ctrl-C aimed at Trackside does not stop
        // the database before the store writer has flushed its last batch.
        cmd.process_group(0);
        cmd.output()
            .with_context(|| format!("running {}", self.bin_dir.join("pg_ctl").display()))
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir(self.pgdata.parent().unwrap_or(Path::new("/")));
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
            cmd.env("HOME", &user.dir);
        }
        cmd
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if !self.started_here {
            return;
        }
        if let Err(err) = self.stop() {
            tracing::error!("stopping private PostgreSQL: {err:#}");
        }
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}

/// Debian installs each major version under /usr/lib/postgresql/<major>/bin;
/// the newest one wins. Elsewhere, `initdb` on PATH.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists())
        .context(
            "no PostgreSQL server binaries found (initdb, pg_ctl): install Debian's postgresql \
             package, set database.pg_bin_dir, or give a database URL",
        )
}

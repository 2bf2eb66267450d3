//! `sqlx::migrate!` embeds the migration files when the crate compiles;
//! a file added later is seen only if the build reruns, which this asks
//! Cargo to do whenever the directory changes.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

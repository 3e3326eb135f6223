//! The migrations are compiled into the binary (`sqlx::migrate!` in
//! `src/db.rs`); a new or changed migration must rebuild it, which Cargo
//! does not know on its own.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

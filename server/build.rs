//! Rebuilds the binary when the web UI's build output changes: release
//! builds embed `web/dist` (see `server/src/api/web.rs`).

fn main() {
    println!("cargo:rerun-if-changed=../web/dist");
}

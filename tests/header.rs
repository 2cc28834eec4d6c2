//! include/heisen.h must equal a fresh cbindgen run over src/ffi/, and compile on its own as
//! C99 and C++ with every warning an error.
//! Regenerate after changing the C API: `HEISEN_BLESS=1 cargo test --test header`.

use std::path::Path;
use std::process::Command;

fn generate() -> Vec<u8> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let cfg = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(cfg)
        .with_src(format!("{dir}/src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    out
}

#[test]
fn header_matches_cbindgen() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/heisen.h");
    let fresh = generate();
    if std::env::var_os("HEISEN_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/heisen.h is stale: regenerate with `HEISEN_BLESS=1 cargo test --test header` and commit it"
    );
}

#[test]
fn header_compiles_alone_as_c99_and_cpp() {
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/heisen.h");
    for (cc, args) in [
        ("cc", &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-x", "c"][..]),
        ("c++", &["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-x", "c++"][..]),
    ] {
        let out = Command::new(cc).args(args).arg(&header).output().unwrap_or_else(|e| panic!("{cc}: {e}"));
        assert!(out.status.success(), "{cc} rejects the header:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

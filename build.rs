// The SONAME carries the ABI major (not the crate version): a newer libheisen.so.1 drops in
// under programs built against an older one.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libheisen.so.1");
    println!("cargo:rerun-if-changed=build.rs");
}

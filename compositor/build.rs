// The CPU path scales with the system libyuv (Debian `libyuv-dev`, installed by scripts/setup.sh);
// `compositor/src/libyuv.rs` declares what it calls.
fn main() {
    println!("cargo:rustc-link-lib=dylib=yuv");
}

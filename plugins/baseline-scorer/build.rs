//! Links the component with a 64 KiB stack instead of rustc's 1 MiB: the
//! scorer recurses little, and a smaller linear memory is less for the host
//! to reset after each call. Native builds (unit tests) keep their default.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo::rustc-link-arg-cdylib=-zstack-size=65536");
    }
}

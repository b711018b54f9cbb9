//! Links the component with a 64 KiB stack instead of rustc's 1 MiB: the
//! scorer recurses little, and a smaller linear memory is less for the host
//! to reset after each call.

fn main() {
    println!("cargo::rustc-link-arg-cdylib=-zstack-size=65536");
}

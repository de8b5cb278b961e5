//! The Rust code for Cursor's protobuf messages is generated with `prost` from
//! `layers/proto/cursor_aiserver.proto` and checked in (`layers/src/cursor/generated/`), so that
//! building the crate needs neither `protoc` nor a build script. This test regenerates it with
//! the pure-Rust `protox` compiler and fails when the checked-in file is stale;
//! `REGENERATE_CURSOR_PROTO=1` writes the fresh file instead.

use std::path::PathBuf;

#[test]
fn checked_in_cursor_protobuf_code_matches_the_proto_file() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto = root.join("proto/cursor_aiserver.proto");
    let descriptors = protox::compile([&proto], [root.join("proto")]).expect("the .proto compiles");
    let out = tempfile_dir();
    prost_build::Config::new()
        .out_dir(&out)
        .compile_fds(descriptors)
        .expect("prost generates code");
    let fresh = std::fs::read_to_string(out.join("aiserver.v1.rs")).unwrap();
    let checked_in_path = root.join("src/cursor/generated/aiserver.v1.rs");
    if std::env::var_os("REGENERATE_CURSOR_PROTO").is_some() {
        std::fs::write(&checked_in_path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "layers/src/cursor/generated/aiserver.v1.rs is stale; run \
         `REGENERATE_CURSOR_PROTO=1 cargo test -p kiro-layers --test cursor_proto_regen`"
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cursor-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

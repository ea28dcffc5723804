//! Builds guest components from source (guests/ and examples/) once and caches them under
//! target/guests, keyed by a hash of their sources, so reruns build nothing.
//!
//! A missing toolchain fails the test with the command that installs it: tests never skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn hash_inputs(inputs: &[PathBuf]) -> String {
    let mut hasher = Sha256::new();
    for input in inputs {
        hasher.update(input.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display())));
    }
    hex::encode(hasher.finalize())[..16].to_owned()
}

fn cached(name: &str, inputs: &[PathBuf], build: impl FnOnce(&Path) -> Command) -> PathBuf {
    let root = repo_root();
    let out = root
        .join("target/guests")
        .join(format!("{name}-{}.wasm", hash_inputs(inputs)));
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let tmp = out.with_extension("wasm.tmp");
    let mut command = build(&tmp);
    if command.get_current_dir().is_none() {
        command.current_dir(&root);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run guest build for {name}: {e}"));
    assert!(
        output.status.success(),
        "building guest {name} failed — run `bash scripts/setup-toolchains.sh` first.\n\
         stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// A C guest from `guests/c/<name>`, built for the plain `http-guest` world.
pub fn c(name: &str) -> PathBuf {
    c_world(name, "http-guest")
}

/// A C guest from `guests/c/<name>`, built for `world` (`http-guest` or `nimbus-guest`).
pub fn c_world(name: &str, world: &str) -> PathBuf {
    let root = repo_root();
    let inputs = vec![
        root.join(format!("guests/c/{name}/app.c")),
        root.join("guests/c/common/nimbus_http.c"),
        root.join("guests/c/common/nimbus_http.h"),
        root.join("guests/c/build.sh"),
        root.join("guests/wit/world.wit"),
    ];
    cached(&format!("c-{name}-{world}"), &inputs, |out| {
        let mut cmd = Command::new("bash");
        cmd.arg("guests/c/build.sh").arg(name).arg(out).arg(world);
        cmd
    })
}

/// A JS guest from a source file (relative to the repo root), for the plain `http-guest` world.
pub fn js(source: &str) -> PathBuf {
    js_world(source, "http-guest")
}

/// A JS guest from a source file, built for `world` (`http-guest` or `nimbus-guest`).
pub fn js_world(source: &str, world: &str) -> PathBuf {
    let root = repo_root();
    let inputs = vec![
        root.join(source),
        root.join("guests/js/componentize.mjs"),
        root.join("guests/wit-0.2.10/world.wit"),
    ];
    let stem = Path::new(source)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    cached(&format!("js-{stem}-{world}"), &inputs, |out| {
        let mut cmd = Command::new("node");
        cmd.arg("guests/js/componentize.mjs")
            .arg(source)
            .arg(out)
            .arg(world);
        cmd
    })
}

/// A Python guest from a directory holding `app.py` (relative to the repo root), for `world`.
pub fn py(dir: &str, world: &str) -> PathBuf {
    let root = repo_root();
    let inputs = vec![
        root.join(dir).join("app.py"),
        root.join("guests/py/build.sh"),
        root.join("guests/wit/world.wit"),
    ];
    let stem = Path::new(dir)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    cached(&format!("py-{stem}-{world}"), &inputs, |out| {
        let mut cmd = Command::new("bash");
        cmd.arg("guests/py/build.sh").arg(dir).arg(out).arg(world);
        cmd
    })
}

/// The component of an example app's function, built with the example's own `build` command
/// (cached by a hash of the example's sources). Returns (manifest text, component path).
pub fn example(app: &str, function: &str) -> (String, PathBuf) {
    let root = repo_root();
    let dir = root.join("examples").join(app);
    let manifest_text = std::fs::read_to_string(dir.join("nimbus.toml")).unwrap();
    let manifest = nimbus_manifest::parse(&manifest_text, "nimbus.toml").unwrap();
    let f = manifest
        .functions
        .iter()
        .find(|f| f.name == function)
        .unwrap_or_else(|| panic!("example {app} has no function {function}"));
    // The build tools and WIT worlds are inputs too: changing them must rebuild the example.
    let mut inputs = vec![
        dir.join("nimbus.toml"),
        root.join("guests/js/componentize.mjs"),
        root.join("guests/py/build.sh"),
        root.join("guests/wit/world.wit"),
        root.join("guests/wit-0.2.10/world.wit"),
    ];
    collect_sources(&dir, &mut inputs);
    inputs.sort();
    let build = f
        .build
        .clone()
        .expect("example functions have a build command");
    let component = dir.join(&f.component);
    let out = cached(&format!("example-{app}-{function}"), &inputs, |tmp| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "{build} && cp {} {}",
                component.display(),
                tmp.display()
            ))
            .current_dir(&dir);
        cmd
    });
    (manifest_text, out)
}

fn collect_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "dist" | "node_modules" | "__pycache__") {
                collect_sources(&path, out);
            }
        } else if !name.ends_with(".wasm") && name != "nimbus.toml" {
            out.push(path);
        }
    }
}

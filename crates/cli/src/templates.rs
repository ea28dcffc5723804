//! App templates for `nimbus new`: a ready-to-deploy app directory per language, embedded in
//! the binary. Each template carries the WIT it builds against, so a project builds offline
//! and does not depend on this repository.

use std::path::Path;

use anyhow::{Context, bail};

use crate::args::Lang;

type Files = &'static [(&'static str, &'static str)];

const JS: Files = &[
    ("nimbus.toml", include_str!("../templates/js/nimbus.toml")),
    ("package.json", include_str!("../templates/js/package.json")),
    ("deps.mjs", include_str!("../templates/js/deps.mjs")),
    ("build.mjs", include_str!("../templates/js/build.mjs")),
    ("src/index.js", include_str!("../templates/js/src/index.js")),
    (".gitignore", include_str!("../templates/js/gitignore")),
];

/// componentize-js 0.23 targets wasi:http@0.2.10.
const WIT_0_2_10: Files = &[
    (
        "wit/world.wit",
        include_str!("../../../guests/wit-0.2.10/world.wit"),
    ),
    (
        "wit/deps/cli.wit",
        include_str!("../../../guests/wit-0.2.10/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../guests/wit-0.2.10/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../guests/wit-0.2.10/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../guests/wit-0.2.10/deps/http.wit"),
    ),
    (
        "wit/deps/io.wit",
        include_str!("../../../guests/wit-0.2.10/deps/io.wit"),
    ),
    (
        "wit/deps/random.wit",
        include_str!("../../../guests/wit-0.2.10/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../guests/wit-0.2.10/deps/sockets.wit"),
    ),
    (
        "wit/deps/keyvalue.wit",
        include_str!("../../../guests/wit-0.2.10/deps/keyvalue.wit"),
    ),
    (
        "wit/deps/config.wit",
        include_str!("../../../guests/wit-0.2.10/deps/config.wit"),
    ),
    (
        "wit/deps/blobstore.wit",
        include_str!("../../../guests/wit-0.2.10/deps/blobstore.wit"),
    ),
    (
        "wit/deps/events.wit",
        include_str!("../../../guests/wit-0.2.10/deps/events.wit"),
    ),
    (
        "wit/deps/queue.wit",
        include_str!("../../../guests/wit-0.2.10/deps/queue.wit"),
    ),
];

const PYTHON: Files = &[
    (
        "nimbus.toml",
        include_str!("../templates/python/nimbus.toml"),
    ),
    ("app.py", include_str!("../templates/python/app.py")),
    (".gitignore", include_str!("../templates/python/gitignore")),
];

const WIT_0_2_12: Files = &[
    (
        "wit/world.wit",
        include_str!("../../../guests/wit/world.wit"),
    ),
    (
        "wit/deps/cli.wit",
        include_str!("../../../guests/wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../guests/wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../guests/wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../guests/wit/deps/http.wit"),
    ),
    (
        "wit/deps/io.wit",
        include_str!("../../../guests/wit/deps/io.wit"),
    ),
    (
        "wit/deps/random.wit",
        include_str!("../../../guests/wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../guests/wit/deps/sockets.wit"),
    ),
    (
        "wit/deps/keyvalue.wit",
        include_str!("../../../guests/wit/deps/keyvalue.wit"),
    ),
    (
        "wit/deps/config.wit",
        include_str!("../../../guests/wit/deps/config.wit"),
    ),
    (
        "wit/deps/blobstore.wit",
        include_str!("../../../guests/wit/deps/blobstore.wit"),
    ),
    (
        "wit/deps/events.wit",
        include_str!("../../../guests/wit/deps/events.wit"),
    ),
    (
        "wit/deps/queue.wit",
        include_str!("../../../guests/wit/deps/queue.wit"),
    ),
];

/// Creates `parent/name` from the template for `lang`; returns the directory.
pub fn create(parent: &Path, name: &str, lang: Lang) -> anyhow::Result<std::path::PathBuf> {
    let (files, wit) = match lang {
        Lang::Js => (JS, WIT_0_2_10),
        Lang::Python => (PYTHON, WIT_0_2_12),
    };
    // Validate the name with the manifest's own rules before writing anything.
    let manifest = render(files[0].1, name);
    nimbus_manifest::parse(&manifest, "nimbus.toml")
        .map_err(|e| anyhow::anyhow!("invalid app name `{name}`: {}", e.message))?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    for (path, contents) in files.iter().chain(wit.iter()) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, render(contents, name))
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(dir)
}

fn render(template: &str, name: &str) -> String {
    template.replace("{{name}}", name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    /// A template carries every WIT file the guest worlds need: a new `deps/*.wit` in
    /// `guests/` must be added here too, or `nimbus new` projects fail to build.
    #[test]
    fn templates_carry_every_wit_dependency() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests");
        for (dir, files) in [("wit-0.2.10", WIT_0_2_10), ("wit", WIT_0_2_12)] {
            for entry in std::fs::read_dir(root.join(dir).join("deps")).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let path = format!("wit/deps/{name}");
                assert!(
                    files.iter().any(|(p, _)| *p == path),
                    "{dir}/deps/{name} is missing from the templates"
                );
            }
        }
    }
}

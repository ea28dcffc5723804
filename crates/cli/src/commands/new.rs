//! `nimbus new NAME --lang js|python`: writes a ready-to-deploy app from a template.

use crate::args::{Lang, NewArgs};

/// `nimbus new`.
pub fn run(args: NewArgs, json: bool) -> anyhow::Result<()> {
    let dir = crate::templates::create(&args.dir, &args.name, args.lang)?;
    if json {
        println!("{}", serde_json::json!({ "app": args.name, "dir": dir }));
        return Ok(());
    }
    let needs = match args.lang {
        Lang::Js => "node + npm",
        Lang::Python => "componentize-py (pip install componentize-py)",
    };
    println!("created {} in {}", args.name, dir.display());
    println!("  build needs {needs}");
    println!("  next: cd {} && nimbus deploy", dir.display());
    Ok(())
}

//! `nimbus new NAME --lang js|python`: writes a ready-to-deploy app from a template.

use crate::args::NewArgs;

/// `nimbus new`.
pub fn run(args: NewArgs, json: bool) -> anyhow::Result<()> {
    crate::templates::create(&args.dir, &args.name, args.lang, json)
}

//! App templates for `nimbus new`.

use std::path::Path;

use crate::args::Lang;

/// Creates `parent/name` from the template for `lang`.
pub fn create(parent: &Path, name: &str, lang: Lang, json: bool) -> anyhow::Result<()> {
    let _ = (parent, name, lang, json);
    anyhow::bail!("templates are not available yet")
}

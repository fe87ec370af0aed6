//! Byte sizes as people write them ("32MiB", "500k", "1048576") and `~` in paths.

use std::path::{Path, PathBuf};

/// Parses a byte size: a plain integer, or an integer followed by a unit.
///
/// Binary units (`KiB`, `MiB`, `GiB`, and the short `k`, `m`, `g` that mbsync and
/// rsync users type) are powers of 1024; SI units (`kB`, `MB`, `GB`) are powers of
/// 1000, so both readings of "MB" exist and the unit says which one is meant.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a size; write a whole number of bytes, optionally with a unit \
             (k, KiB, kB, m, MiB, MB, g, GiB, GB)"
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "b" | "B" => 1,
        "k" | "K" | "KiB" | "kiB" => 1 << 10,
        "m" | "M" | "MiB" => 1 << 20,
        "g" | "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; use k, KiB, kB, m, MiB, MB, g, GiB or GB"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Expands a leading `~` to `home`. `~user` is refused rather than guessed at.
pub fn expand_tilde(path: &str, home: &Path) -> Result<PathBuf, String> {
    if path == "~" {
        return Ok(home.to_path_buf());
    }
    if let Some(rest) = path.strip_prefix("~/") {
        return Ok(home.join(rest));
    }
    if path.starts_with('~') {
        return Err(format!(
            "`{path}`: only `~` and `~/...` are expanded (to the home directory)"
        ));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_integers_and_units() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("32MiB"), Ok(32 * 1024 * 1024));
        assert_eq!(parse_size("32 MiB"), Ok(32 * 1024 * 1024));
        assert_eq!(parse_size("500k"), Ok(500 * 1024));
        assert_eq!(parse_size("500kB"), Ok(500_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("7b"), Ok(7));
    }

    #[test]
    fn sizes_reject_nonsense() {
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5MiB")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_size("12 parsecs").unwrap_err().contains("parsecs"));
        assert!(parse_size("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("99999999999G")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn tilde_expands_to_home_only() {
        let home = Path::new("/home/alice");
        assert_eq!(expand_tilde("~", home), Ok(home.to_path_buf()));
        assert_eq!(expand_tilde("~/Mail", home), Ok(home.join("Mail")));
        assert_eq!(
            expand_tilde("/srv/~/x", home),
            Ok(PathBuf::from("/srv/~/x"))
        );
        assert_eq!(expand_tilde("rel", home), Ok(PathBuf::from("rel")));
        assert!(expand_tilde("~bob/Mail", home).is_err());
    }
}

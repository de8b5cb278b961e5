//! Form bodies (`application/x-www-form-urlencoded`) and query strings: ordered pairs, so a
//! field may repeat (the selected rows of a table), with typed getters that answer the user's
//! mistake in words.

use kiro_layers::store::MICRO_PER_CREDIT;

/// A decoded form or query string.
#[derive(Debug, Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

/// A field the user got wrong, in words (shown on the page).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError(pub String);

impl Form {
    /// Parses `a=1&b=x+y&a=2`.
    pub fn parse(text: &str) -> Form {
        Form {
            pairs: crate::tenancy::api::url_pairs(text).collect(),
        }
    }

    /// The first value of `name`, trimmed; `None` when missing or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first value of `name`, untrimmed (a pasted token or JSON).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required text field.
    pub fn required(&self, name: &str) -> Result<&str, FieldError> {
        self.get(name)
            .ok_or_else(|| FieldError(format!("`{name}` is required.")))
    }

    /// An optional whole number.
    pub fn int<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, FieldError> {
        self.get(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| FieldError(format!("`{name}` must be a whole number.")))
            })
            .transpose()
    }

    /// An optional amount of credits (`12.5`), as micro-credits.
    pub fn credits(&self, name: &str) -> Result<Option<i64>, FieldError> {
        self.get(name).map(|v| parse_credits(name, v)).transpose()
    }
}

/// `12.5` credits as micro-credits, exactly (no float rounding).
pub fn parse_credits(name: &str, text: &str) -> Result<i64, FieldError> {
    let bad = || {
        FieldError(format!(
            "`{name}` must be an amount of credits such as 12.5."
        ))
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 6
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| bad())?;
    let micro = whole
        .checked_mul(MICRO_PER_CREDIT)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(bad)?;
    Ok(if negative { -micro } else { micro })
}

/// Micro-credits shown as credits, with up to 6 decimals and no trailing zeros.
pub fn show_credits(micro: i64) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let abs = micro.unsigned_abs();
    let per = MICRO_PER_CREDIT as u64;
    let (whole, fraction) = (abs / per, abs % per);
    if fraction == 0 {
        format!("{sign}{whole}")
    } else {
        let fraction = format!("{fraction:06}");
        format!("{sign}{whole}.{}", fraction.trim_end_matches('0'))
    }
}

/// Decodes `%xx` and `+`.
pub fn percent_decode(text: &str) -> String {
    crate::tenancy::api::url_pairs(&format!("x={text}"))
        .next()
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Encodes everything but unreserved characters (for query strings and cookie values).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_are_parsed_exactly_and_shown_back() {
        assert_eq!(parse_credits("a", "12.5"), Ok(12_500_000));
        assert_eq!(parse_credits("a", "0.000001"), Ok(1));
        assert_eq!(parse_credits("a", "-3"), Ok(-3_000_000));
        assert_eq!(parse_credits("a", ".5"), Ok(500_000));
        for bad in [
            "",
            ".",
            "1.2.3",
            "1e3",
            "0.0000001",
            "abc",
            "99999999999999999",
        ] {
            assert!(parse_credits("a", bad).is_err(), "{bad}");
        }
        assert_eq!(show_credits(12_500_000), "12.5");
        assert_eq!(show_credits(-1), "-0.000001");
        assert_eq!(show_credits(0), "0");
    }

    #[test]
    fn repeated_fields_and_encodings_survive() {
        let form = Form::parse("id=1&id=2&name=a+b%26c&empty=+");
        assert_eq!(form.all("id"), ["1", "2"]);
        assert_eq!(form.get("name"), Some("a b&c"));
        assert_eq!(form.get("empty"), None);
        assert_eq!(percent_decode(&percent_encode("é & ;=")), "é & ;=");
    }
}

//! Money as integers in the currency's minor unit (ISO 4217), converted to
//! and from the decimal strings the providers speak. No floating point.

use thiserror::Error;

/// Why a decimal amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    #[error("not a decimal amount: {0:?}")]
    Malformed(String),
    #[error("{amount:?} has more decimals than {currency} allows")]
    TooPrecise { amount: String, currency: String },
    #[error("amount out of range: {0:?}")]
    OutOfRange(String),
}

/// The number of decimals of a currency's minor unit per ISO 4217 (`RWF` 0,
/// `USD` 2, `BHD` 3), case-insensitive; `None` for a code this table does
/// not know.
pub fn exponent(currency: &str) -> Option<u32> {
    let code = currency.trim().to_ascii_uppercase();
    let e = match code.as_str() {
        // No minor unit.
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        // Thousandths.
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        // Hundredths: the currencies Bwenge's providers operate in, and the
        // common ones Stripe prices in.
        "USD" | "EUR" | "GBP" | "CHF" | "CAD" | "AUD" | "NZD" | "CNY" | "INR" | "KES" | "TZS"
        | "ZMW" | "MWK" | "CDF" | "ZAR" | "NGN" | "GHS" | "ETB" | "MZN" | "SSP" | "SOS" | "SCR"
        | "MGA" | "MUR" | "BWP" | "NAD" | "SZL" | "LSL" | "EGP" | "MAD" | "DZD" | "AOA" | "ERN"
        | "SDG" | "LRD" | "SLE" | "GMD" | "CVE" | "STN" | "SEK" | "NOK" | "DKK" | "PLN" | "CZK"
        | "HUF" | "RON" | "BGN" | "TRY" | "BRL" | "MXN" | "ARS" | "COP" | "PEN" | "SGD" | "HKD"
        | "TWD" | "THB" | "MYR" | "PHP" | "IDR" | "PKR" | "BDT" | "LKR" | "NPR" | "AED" | "SAR"
        | "QAR" | "ILS" | "UAH" | "RUB" => 2,
        _ => return None,
    };
    Some(e)
}

fn exponent_or_err(currency: &str) -> Result<u32, MoneyError> {
    exponent(currency).ok_or_else(|| MoneyError::UnknownCurrency(currency.to_owned()))
}

/// `amount_minor` as a decimal string in major units: `30000` RWF is
/// `"30000"`, `3000` USD is `"30.00"`, `-5` USD is `"-0.05"`. A currency the
/// table does not know is written with two decimals (use [`exponent`] first
/// to refuse it).
pub fn to_major_string(amount_minor: i64, currency: &str) -> String {
    format_with_exponent(amount_minor, exponent(currency).unwrap_or(2))
}

/// Like [`to_major_string`], refusing an unknown currency.
pub fn try_to_major_string(amount_minor: i64, currency: &str) -> Result<String, MoneyError> {
    Ok(format_with_exponent(
        amount_minor,
        exponent_or_err(currency)?,
    ))
}

fn format_with_exponent(amount_minor: i64, exp: u32) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    if exp == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u64.pow(exp);
    let width = exp as usize;
    format!("{sign}{}.{:0width$}", abs / unit, abs % unit)
}

/// A decimal string in major units back to minor units, exactly:
/// `"30000"` RWF → `30000`, `"30.00"` / `"30"` / `"30.5"` USD → `3000` /
/// `3000` / `3050`. Trailing zeros beyond the currency's decimals are
/// accepted (`"30000.00"` RWF), any other digit there is refused; so are
/// exponents, spaces inside, `+` signs and amounts past `i64`.
pub fn parse_major(s: &str, currency: &str) -> Result<i64, MoneyError> {
    let exp = exponent_or_err(currency)?;
    let malformed = || MoneyError::Malformed(s.to_owned());
    let text = s.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(malformed());
    }
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    if digits.contains('.') && frac_part.is_empty() {
        return Err(malformed());
    }
    if !frac_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let exp_len = exp as usize;
    let (kept, extra) = if frac_part.len() > exp_len {
        frac_part.split_at(exp_len)
    } else {
        (frac_part, "")
    };
    if extra.bytes().any(|b| b != b'0') {
        return Err(MoneyError::TooPrecise {
            amount: s.to_owned(),
            currency: currency.to_ascii_uppercase(),
        });
    }
    let out_of_range = || MoneyError::OutOfRange(s.to_owned());
    let mut value: i64 = 0;
    for b in int_part.bytes().chain(kept.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(out_of_range)?;
    }
    for _ in kept.len()..exp_len {
        value = value.checked_mul(10).ok_or_else(out_of_range)?;
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(exponent("RWF"), Some(0));
        assert_eq!(exponent("ugx"), Some(0));
        assert_eq!(exponent("USD"), Some(2));
        assert_eq!(exponent("EUR"), Some(2));
        assert_eq!(exponent("KES"), Some(2));
        assert_eq!(exponent("ZMW"), Some(2));
        assert_eq!(exponent("TZS"), Some(2));
        assert_eq!(exponent("BHD"), Some(3));
        assert_eq!(exponent("XYZ"), None);
    }

    #[test]
    fn formats_major_units() {
        assert_eq!(to_major_string(30000, "RWF"), "30000");
        assert_eq!(to_major_string(3000, "USD"), "30.00");
        assert_eq!(to_major_string(5, "usd"), "0.05");
        assert_eq!(to_major_string(-5, "USD"), "-0.05");
        assert_eq!(to_major_string(1234, "BHD"), "1.234");
        assert_eq!(to_major_string(i64::MIN, "RWF"), "-9223372036854775808");
        assert!(try_to_major_string(1, "XYZ").is_err());
    }

    #[test]
    fn parses_major_units_exactly() {
        assert_eq!(parse_major("30000", "RWF"), Ok(30000));
        assert_eq!(parse_major("30000.00", "RWF"), Ok(30000));
        assert_eq!(parse_major("30.00", "USD"), Ok(3000));
        assert_eq!(parse_major("30", "USD"), Ok(3000));
        assert_eq!(parse_major("30.5", "USD"), Ok(3050));
        assert_eq!(parse_major("0.07", "USD"), Ok(7));
        assert_eq!(parse_major("-0.07", "USD"), Ok(-7));
        assert_eq!(parse_major(" 12 ", "RWF"), Ok(12));
        // 0.1 + 0.2 is not a problem without floats.
        assert_eq!(parse_major("0.30", "USD"), Ok(30));
    }

    #[test]
    fn refuses_what_is_not_an_exact_amount() {
        assert!(matches!(
            parse_major("30000.5", "RWF"),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_major("30.001", "USD"),
            Err(MoneyError::TooPrecise { .. })
        ));
        for bad in [
            "", "-", ".", "1.", ".5", "1e3", "+5", "1,000", "1 000", "abc", "--1", "0x10",
        ] {
            assert!(
                matches!(parse_major(bad, "USD"), Err(MoneyError::Malformed(_))),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            parse_major("92233720368547758.08", "USD"),
            Err(MoneyError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_major("1", "XYZ"),
            Err(MoneyError::UnknownCurrency(_))
        ));
    }

    #[test]
    fn round_trips() {
        for (amount, cur) in [
            (30000, "RWF"),
            (3000, "USD"),
            (1, "USD"),
            (100000, "UGX"),
            (999, "KES"),
        ] {
            assert_eq!(parse_major(&to_major_string(amount, cur), cur), Ok(amount));
        }
    }
}

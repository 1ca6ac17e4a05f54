//! Outsourcing terms: rate (hourly or flat), currency, authorizations, deadline, instructions.

use std::fmt;

use rust_decimal::Decimal;

use crate::error::{invalid, DomainError};
use crate::ids::Timestamp;
use crate::values;

/// ISO 4217 currencies accepted in terms, with their number of minor-unit digits.
/// Kept to currencies in common use; extend the table rather than accept any three letters.
#[rustfmt::skip]
pub const CURRENCIES: [(&str, u32); 34] = [
    ("AUD", 2), ("BHD", 3), ("BRL", 2), ("CAD", 2), ("CHF", 2), ("CLP", 0), ("CNY", 2),
    ("CZK", 2), ("DKK", 2), ("EUR", 2), ("GBP", 2), ("HKD", 2), ("HUF", 2), ("IDR", 2),
    ("ILS", 2), ("INR", 2), ("ISK", 0), ("JOD", 3), ("JPY", 0), ("KRW", 0), ("KWD", 3),
    ("MXN", 2), ("NOK", 2), ("NZD", 2), ("OMR", 3), ("PLN", 2), ("RON", 2), ("SEK", 2),
    ("SGD", 2), ("THB", 2), ("TND", 3), ("TRY", 2), ("USD", 2), ("ZAR", 2),
];

/// A currency from [`CURRENCIES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency {
    code: &'static str,
    minor_units: u32,
}

impl Currency {
    pub fn parse(s: &str) -> Result<Currency, DomainError> {
        let up = s.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == up)
            .map(|(code, minor_units)| Currency {
                code,
                minor_units: *minor_units,
            })
            .ok_or_else(|| {
                invalid(
                    "currency",
                    format!("{s:?} is not a supported ISO 4217 currency code"),
                )
            })
    }
    pub fn code(&self) -> &'static str {
        self.code
    }
    /// Digits after the decimal point in this currency's smallest unit (0 for JPY).
    pub fn minor_units(&self) -> u32 {
        self.minor_units
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// How the partner's work is priced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// Per billable hour.
    Hourly(Decimal),
    /// One amount for the whole job.
    Flat(Decimal),
}

/// The terms a lead offers and a partner accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    pub rate: Rate,
    pub currency: Currency,
    pub authorized_hours: Option<Decimal>,
    pub authorized_charge: Option<Decimal>,
    /// The partner must accept or decline before this moment, or the offer expires.
    pub respond_by: Option<Timestamp>,
    pub instructions: String,
    /// How each priced line is rounded to the currency's minor unit.
    pub rounding: Rounding,
}

/// Rounding of a priced line to the currency's minor unit (cents; none for JPY).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Halves away from zero (commercial rounding): 0.125 -> 0.13.
    #[default]
    HalfUp,
    /// Halves to the even neighbour (banker's rounding): 0.125 -> 0.12.
    HalfEven,
    /// Always up: 0.121 -> 0.13.
    Up,
    /// Always down: 0.129 -> 0.12.
    Down,
}

impl Rounding {
    pub const ALL: [Rounding; 4] = [
        Rounding::HalfUp,
        Rounding::HalfEven,
        Rounding::Up,
        Rounding::Down,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rounding::HalfUp => "half-up",
            Rounding::HalfEven => "half-even",
            Rounding::Up => "up",
            Rounding::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Result<Rounding, DomainError> {
        Rounding::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s.trim())
            .ok_or_else(|| {
                invalid(
                    "rounding",
                    format!("{s:?} is not one of half-up, half-even, up, down"),
                )
            })
    }

    /// Rounds `amount` to the minor unit of `currency`.
    pub fn apply(self, amount: Decimal, currency: Currency) -> Decimal {
        use rust_decimal::RoundingStrategy as S;
        let strategy = match self {
            Rounding::HalfUp => S::MidpointAwayFromZero,
            Rounding::HalfEven => S::MidpointNearestEven,
            Rounding::Up => S::AwayFromZero,
            Rounding::Down => S::ToZero,
        };
        let mut r = amount.round_dp_with_strategy(currency.minor_units(), strategy);
        // Shown with exactly the currency's digits: 25 EUR is 25.00.
        r.rescale(currency.minor_units());
        r
    }
}

/// Most hours a link may authorize.
pub const MAX_AUTHORIZED_HOURS: Decimal = Decimal::from_parts(100_000, 0, 0, false, 0);

impl Terms {
    /// Validates amounts (non-negative, exact) and text; returns the normalized terms.
    pub fn validated(self) -> Result<Terms, DomainError> {
        let rate = match self.rate {
            Rate::Hourly(r) => Rate::Hourly(values::money("hourly rate", r)?),
            Rate::Flat(r) => Rate::Flat(values::money("flat rate", r)?),
        };
        let authorized_hours = match self.authorized_hours {
            None => None,
            Some(h) => {
                let h = values::money("authorized hours", h)?;
                if h > MAX_AUTHORIZED_HOURS {
                    return Err(invalid(
                        "authorized hours",
                        format!("{h} is more than {MAX_AUTHORIZED_HOURS}"),
                    ));
                }
                Some(h)
            }
        };
        let authorized_charge = self
            .authorized_charge
            .map(|c| values::money("authorized charge", c))
            .transpose()?;
        let instructions = values::text("instructions", &self.instructions, false)?;
        Ok(Terms {
            rate,
            currency: self.currency,
            authorized_hours,
            authorized_charge,
            respond_by: self.respond_by,
            instructions,
            rounding: self.rounding,
        })
    }
}

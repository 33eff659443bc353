//! `waves`: a staged rollout for pull-mode fleets.
//!
//! A fleet that pulls its updates has no coordinator to say "ten machines
//! first, then the rest". Instead the publisher signs the schedule into the
//! release manifest — `1%@1h,5%@4h,25%@1d,100%@3d` — and every node places
//! itself in it, deterministically, from its own id (the node side:
//! `applier/src/waves.rs`; the exact formula: docs/FORMAT.md, "Waves").
//! Percents are cumulative: `5%@4h` means that four hours after the
//! release was created, 5 % of the fleet (the 1 % of the first wave
//! included) may install it.
//!
//! The schedule lives here, beside the manifest, because both sides must
//! agree on what a valid one is: the publisher refuses to sign a schedule a
//! node would refuse, and a node refuses a manifest whose schedule could
//! leave part of the fleet without the release forever (no 100 % wave) or
//! that reads two ways (percents or delays going backwards).

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// The longest a wave may wait after the release was created: ten years.
/// Longer is surely a unit mistake, and the bound keeps `created +
/// after_seconds` far inside the range of a timestamp.
pub const MAX_AFTER_SECONDS: u64 = 3650 * 86_400;

/// One wave: `percent` of the fleet (cumulative) may install once
/// `after_seconds` have passed since the release's `created`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub percent: u8,
    pub after_seconds: u64,
}

impl Wave {
    /// When this wave opens for a release created at `created`. Saturates
    /// at the end of time instead of failing: a validated wave never gets
    /// near it, and "never" is the safe reading of one that does.
    pub fn opens_at(&self, created: Timestamp) -> Timestamp {
        i64::try_from(self.after_seconds)
            .ok()
            .and_then(|secs| created.checked_add(SignedDuration::from_secs(secs)).ok())
            .unwrap_or(Timestamp::MAX)
    }
}

/// The rules a schedule must follow (an empty one means no waves: every
/// node may install at once). The message says which wave is wrong and how.
pub fn validate(waves: &[Wave]) -> Result<(), String> {
    let Some(last) = waves.last() else {
        return Ok(());
    };
    for (i, wave) in waves.iter().enumerate() {
        let n = i + 1;
        if !(1..=100).contains(&wave.percent) {
            return Err(format!(
                "wave {n} has percent {}: a wave reaches 1 to 100 percent of the fleet",
                wave.percent
            ));
        }
        if wave.after_seconds > MAX_AFTER_SECONDS {
            return Err(format!(
                "wave {n} opens {} seconds after the release, more than the {MAX_AFTER_SECONDS} \
                 (ten years) a wave may wait",
                wave.after_seconds
            ));
        }
        if let Some(previous) = i.checked_sub(1).map(|p| waves[p]) {
            if wave.percent <= previous.percent {
                return Err(format!(
                    "wave {n} reaches {}%, not more than wave {i} ({}%): percents are \
                     cumulative shares of the fleet and must rise from wave to wave",
                    wave.percent, previous.percent
                ));
            }
            if wave.after_seconds < previous.after_seconds {
                return Err(format!(
                    "wave {n} opens after {}, before wave {i} (after {}): a later wave cannot \
                     open earlier",
                    Delay(wave.after_seconds),
                    Delay(previous.after_seconds)
                ));
            }
        }
    }
    if last.percent != 100 {
        return Err(format!(
            "the last wave reaches {}%, not 100%: the rest of the fleet would never install; \
             end the schedule with a 100% wave",
            last.percent
        ));
    }
    Ok(())
}

/// The spelling the publisher accepts: `1%@1h,5%@4h,25%@1d,100%@3d`.
pub const SPELLING: &str = "PERCENT%@DELAY items separated by commas, e.g. \
                            \"1%@1h,5%@4h,25%@1d,100%@3d\" (whole percents rising to 100, \
                            delays in s, m, h or d that never fall)";

/// Parses and validates a schedule in [`SPELLING`].
pub fn parse_list(text: &str) -> Result<Vec<Wave>, String> {
    if text.trim().is_empty() {
        return Err("the schedule is empty".into());
    }
    let waves = text
        .split(',')
        .enumerate()
        .map(|(i, item)| {
            item.trim()
                .parse::<Wave>()
                .map_err(|e| format!("wave {} ({:?}): {e}", i + 1, item.trim()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    validate(&waves)?;
    Ok(waves)
}

/// The schedule in [`SPELLING`], for messages: `1%@1h,100%@2d`.
pub fn describe(waves: &[Wave]) -> String {
    let items: Vec<String> = waves.iter().map(Wave::to_string).collect();
    items.join(",")
}

impl FromStr for Wave {
    type Err = String;

    /// One item, `PERCENT%@DELAY`; the rules between waves are
    /// [`validate`]'s.
    fn from_str(item: &str) -> Result<Wave, String> {
        let (percent, delay) = item
            .split_once('@')
            .ok_or("expected PERCENT%@DELAY such as 5%@4h")?;
        let percent = percent
            .trim()
            .strip_suffix('%')
            .ok_or("the percent must end with % (5%@4h)")?;
        let percent = parse_digits(percent)
            .and_then(|p| u8::try_from(p).ok())
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| format!("{percent:?} is not a whole percent from 1 to 100"))?;
        let after_seconds = parse_delay(delay.trim())?;
        Ok(Wave {
            percent,
            after_seconds,
        })
    }
}

impl fmt::Display for Wave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%@{}", self.percent, Delay(self.after_seconds))
    }
}

/// `30s`, `90m`, `4h`, `3d`: a number and one unit.
fn parse_delay(text: &str) -> Result<u64, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("the delay {text:?} needs a unit: s, m, h or d (4h)"))?;
    let (number, unit) = text.split_at(unit_at);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "the delay {text:?} is not a whole number with one unit of s, m, h or d (4h)"
            ))
        }
    };
    parse_digits(number)
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| *s <= MAX_AFTER_SECONDS)
        .ok_or_else(|| {
            format!("the delay {text:?} is not a whole number of {unit} up to ten years")
        })
}

/// ASCII digits only: no sign, no space, no fraction.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Seconds in the largest unit that divides them exactly: `4h`, `90m`.
struct Delay(u64);

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        for (scale, unit) in [(86_400, "d"), (3600, "h"), (60, "m")] {
            if secs != 0 && secs.is_multiple_of(scale) {
                return write!(f, "{}{unit}", secs / scale);
            }
        }
        write!(f, "{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(percent: u8, after_seconds: u64) -> Wave {
        Wave {
            percent,
            after_seconds,
        }
    }

    #[test]
    fn the_contract_spelling_parses_to_cumulative_waves() {
        assert_eq!(
            parse_list("1%@1h,5%@4h,25%@1d,100%@3d").unwrap(),
            [
                w(1, 3600),
                w(5, 4 * 3600),
                w(25, 86_400),
                w(100, 3 * 86_400)
            ]
        );
        // Spaces around items are allowed, and every unit.
        assert_eq!(
            parse_list(" 10%@30s , 50%@90m, 100%@2d ").unwrap(),
            [w(10, 30), w(50, 90 * 60), w(100, 2 * 86_400)]
        );
        assert_eq!(parse_list("100%@0s").unwrap(), [w(100, 0)]);
    }

    #[test]
    fn describe_spells_what_parse_list_reads() {
        for text in [
            "1%@1h,5%@4h,25%@1d,100%@3d",
            "10%@30s,50%@90m,100%@2d",
            "100%@0s",
            "1%@61s,100%@25h",
        ] {
            assert_eq!(describe(&parse_list(text).unwrap()), text);
        }
    }

    #[test]
    fn bad_items_are_refused_with_the_expected_form() {
        for (text, expected) in [
            ("", "empty"),
            ("50%", "expected PERCENT%@DELAY"),
            ("50@1h,100%@2h", "must end with %"),
            (
                "0%@1h,100%@2h",
                "\"0\" is not a whole percent from 1 to 100",
            ),
            ("101%@1h", "\"101\" is not a whole percent"),
            ("2.5%@1h,100%@2h", "\"2.5\" is not a whole percent"),
            ("-5%@1h", "\"-5\" is not a whole percent"),
            ("50%@1,100%@2h", "needs a unit"),
            ("50%@1w,100%@2h", "one unit of s, m, h or d"),
            ("50%@1.5h,100%@2h", "one unit of s, m, h or d"),
            ("50%@h,100%@2h", "not a whole number of h"),
            ("50%@1hh,100%@2h", "one unit of s, m, h or d"),
            ("100%@3651d", "up to ten years"),
            ("100%@99999999999999999999d", "up to ten years"),
            ("50%@1h,,100%@2h", "wave 2 (\"\")"),
        ] {
            let err = parse_list(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn schedules_that_read_two_ways_or_strand_nodes_are_refused() {
        for (waves, expected) in [
            (
                vec![w(50, 3600), w(50, 7200), w(100, 7200)],
                "wave 2 reaches 50%, not more than wave 1 (50%)",
            ),
            (
                vec![w(60, 3600), w(40, 7200), w(100, 7200)],
                "wave 2 reaches 40%",
            ),
            (
                vec![w(50, 7200), w(100, 3600)],
                "wave 2 opens after 1h, before wave 1 (after 2h)",
            ),
            (vec![w(50, 3600)], "the last wave reaches 50%, not 100%"),
            (vec![w(10, 0), w(99, 60)], "not 100%"),
            (vec![w(0, 0), w(100, 60)], "wave 1 has percent 0"),
            (vec![w(101, 0)], "wave 1 has percent 101"),
            (
                vec![w(100, MAX_AFTER_SECONDS + 1)],
                "more than the 315360000 (ten years)",
            ),
        ] {
            let err = validate(&waves).expect_err(&format!("{waves:?}"));
            assert!(err.contains(expected), "{waves:?}: {err}");
        }
    }

    #[test]
    fn valid_schedules_pass_including_none_and_equal_delays() {
        for waves in [
            vec![],
            vec![w(100, 0)],
            vec![w(1, 0), w(100, 0)],
            vec![w(1, 60), w(2, 60), w(100, MAX_AFTER_SECONDS)],
            (1..=100).map(|p| w(p, u64::from(p) * 60)).collect(),
        ] {
            assert_eq!(validate(&waves), Ok(()), "{waves:?}");
        }
    }

    #[test]
    fn a_wave_opens_its_delay_after_the_release_was_created() {
        let created: Timestamp = "2030-06-03T00:00:00Z".parse().unwrap();
        assert_eq!(w(5, 0).opens_at(created), created);
        assert_eq!(
            w(5, 4 * 3600).opens_at(created),
            "2030-06-03T04:00:00Z".parse::<Timestamp>().unwrap()
        );
        // Out of range reads as never, not as now.
        assert_eq!(w(100, u64::MAX).opens_at(created), Timestamp::MAX);
        assert_eq!(
            w(100, MAX_AFTER_SECONDS).opens_at(Timestamp::MAX),
            Timestamp::MAX
        );
    }
}

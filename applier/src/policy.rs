//! Update policy (`[policy]`): which release a node may run, and when an
//! unattended run may install it.
//!
//! Two questions, kept apart because they bind different people:
//!
//! - *Which version?* ([`Policy::choose_target`]) `pin`, `max_version` and
//!   `exclude_versions` pick the highest release of the channel they all
//!   allow, instead of the channel's `latest`. They bind every run, an
//!   operator's too: a fleet pinned to `~2.1` must not drift to 3.0 because
//!   someone typed `ferry apply` (`--ignore-policy` overrides on purpose).
//! - *When?* ([`Policy::gate`]) maintenance windows, blackout dates, the
//!   soak delay, the release's rollout wave (`crate::waves`) and `auto`
//!   bind only unattended runs (`ferry apply --unattended`, the systemd
//!   timer). An operator at the console has already decided that now is
//!   the time.
//!
//! Everything here is a pure function of the policy, the signed facts of a
//! release and an instant, so the decisions can be tested exhaustively
//! (DST changes included) without a clock or a repository. The only side
//! effect is at the rim: [`PolicyConfig::compile`] reads the time zone from
//! the system tz database.
//!
//! Choices worth knowing:
//! - A window belongs to the day it starts on: `fri 23:00-02:00` runs into
//!   Saturday morning. Equal start and end mean 24 hours.
//! - Windows are local wall-clock times in `timezone`. On a DST change a
//!   window whose hours do not exist that day (02:00-03:00 when Berlin
//!   springs forward) does not open that day; one whose hours repeat (when
//!   clocks fall back) lasts the longer real time.
//! - Blackout dates are local dates in `timezone`, by the date of the
//!   instant (a window opened the evening before stops at midnight);
//!   nothing installs on them unattended, not even a critical release (a freeze is a promise to the
//!   business). An operator's plain `ferry apply` still installs.
//! - With `critical_bypasses_windows = true` a release signed `critical`
//!   skips the windows *and* the soak delay: a security fix should not wait
//!   two days for a soak meant to catch ordinary regressions.
//! - A rollout wave is a "not before" like soak: the first allowed instant
//!   is the first one in a window, off a blackout date, once both the soak
//!   and the node's wave are over. `critical_bypasses_windows` does not
//!   skip the wave: the node's operator may waive the node's own delays,
//!   but the waves are the publisher's signed decision for the whole fleet
//!   (a publisher who wants a fix everywhere at once publishes it without
//!   waves).
//! - The policy never downgrades: if the installed version is above every
//!   release the policy allows, there is nothing to install (move down with
//!   `ferry rollback` or `ferry apply --version V --allow-downgrade`).

use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use manifests::index::ChannelIndex;
use semver::{Version, VersionReq};
use serde::Deserialize;
use thiserror::Error;

use crate::error::ConfigMistake;

/// `[policy] timezone` when not set. Needs no tz database.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// Soak delays above ten years are surely a unit mistake (minutes? days?).
const MAX_SOAK_HOURS: f64 = 24.0 * 366.0 * 10.0;

/// `[policy]` as written in `ferry.toml`. [`PolicyConfig::compile`] turns
/// it into a [`Policy`], refusing mistakes with the key named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// IANA time zone of `windows` and `blackout_dates`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// When unattended runs may install; none means at any time.
    #[serde(default)]
    pub windows: Vec<WindowConfig>,
    /// `"2026-12-24"` or `"2026-12-20..2027-01-02"` (inclusive).
    #[serde(default)]
    pub blackout_dates: Vec<String>,
    /// A release signed `critical: true` skips windows and soak.
    #[serde(default)]
    pub critical_bypasses_windows: bool,
    /// A semver requirement every target must meet, e.g. `~2.1`.
    #[serde(default)]
    pub pin: Option<VersionReq>,
    /// The highest version this node may run.
    #[serde(default)]
    pub max_version: Option<Version>,
    /// Versions never to install.
    #[serde(default)]
    pub exclude_versions: Vec<Version>,
    /// Hours a release must have been published before unattended runs
    /// install it.
    #[serde(default)]
    pub soak_hours: f64,
    /// `false`: unattended runs never install (`ferry check` still reports).
    #[serde(default = "default_auto")]
    pub auto: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            timezone: default_timezone(),
            windows: Vec::new(),
            blackout_dates: Vec::new(),
            critical_bypasses_windows: false,
            pin: None,
            max_version: None,
            exclude_versions: Vec::new(),
            soak_hours: 0.0,
            auto: true,
        }
    }
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_string()
}

fn default_auto() -> bool {
    true
}

/// One `[[policy.windows]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// `["mon", "tue", …]`, or `"daily"`; every day when omitted.
    #[serde(default)]
    pub days: Option<DaysConfig>,
    /// `"HH:MM"`, local time in `timezone`.
    pub start: String,
    /// `"HH:MM"`; before or equal to `start` means the next day.
    pub end: String,
}

/// `days = "daily"` or `days = ["sat", "sun"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DaysConfig {
    Keyword(String),
    List(Vec<String>),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// An explicitly requested version that the policy does not allow.
    #[error("{version} is not allowed by the policy: {reason}; choose another version, change [policy], or pass --ignore-policy")]
    VersionRefused { version: Version, reason: String },
}

/// A checked `[policy]`, ready for decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    pub timezone: TimeZone,
    /// The name it was configured with, for messages.
    pub timezone_name: String,
    pub windows: Vec<Window>,
    pub blackouts: Vec<Blackout>,
    pub critical_bypasses_windows: bool,
    pub pin: Option<VersionReq>,
    pub max_version: Option<Version>,
    pub exclude_versions: Vec<Version>,
    pub soak: SignedDuration,
    pub auto: bool,
}

/// A weekly maintenance window in local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Indexed by `Weekday::to_monday_zero_offset`.
    pub days: [bool; 7],
    pub start: Time,
    pub end: Time,
}

/// Local dates, inclusive, on which nothing installs unattended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blackout {
    pub first: Date,
    pub last: Date,
}

/// What the gate needs to know about a release, all from signed data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFacts {
    pub version: Version,
    /// `created` of the release's pin in the signed index.
    pub created: Timestamp,
    /// `critical` of the signed manifest.
    pub critical: bool,
    /// This node's place in the release's rollout waves; `None` when the
    /// release has none.
    pub wave: Option<crate::waves::WavePlace>,
    /// This node put the release live and rolled it back by itself; an
    /// unattended run does not try it again (`crate::rolled_back_here`).
    /// `None` when an operator names the release.
    pub rolled_back_here: Option<crate::rolled_back_here::RolledBackRelease>,
}

/// Whether an unattended run may install a release now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    Deferred {
        /// Every rule that holds it back now, for people.
        reason: String,
        /// The first instant the policy allows it; `None` when it never
        /// will on its own (`auto = false`).
        next_allowed_at: Option<Timestamp>,
    },
    /// The policy allows it, but this node is its fleet's leader
    /// (`[coordination] role = "leader"`), which updates after its
    /// followers, and some are not done: the next unattended run looks
    /// again. Deferring (exit 0, no lock held meanwhile) instead of
    /// waiting `wait_timeout_seconds` keeps a leader whose followers are
    /// in a later wave from failing every hour until that wave opens.
    AfterFollowers {
        /// Who is behind (`crate::coordination::followers_behind`).
        behind: String,
    },
}

impl Gate {
    /// Why an unattended run does not install now; `None` when it does.
    pub fn reason(&self) -> Option<String> {
        match self {
            Gate::Open => None,
            Gate::Deferred { reason, .. } => Some(reason.clone()),
            Gate::AfterFollowers { behind } => Some(format!(
                "this node is its fleet's leader, which updates after its followers: {behind}"
            )),
        }
    }

    /// When it may install next; `None` when allowed now, never on its
    /// own, or when that depends on other nodes.
    pub fn next_allowed_at(&self) -> Option<Timestamp> {
        match self {
            Gate::Deferred {
                next_allowed_at, ..
            } => *next_allowed_at,
            Gate::Open | Gate::AfterFollowers { .. } => None,
        }
    }
}

impl PolicyConfig {
    /// Checks every key and resolves the time zone (the one side effect:
    /// it reads the system tz database unless the zone is UTC).
    pub fn compile(&self) -> Result<Policy, ConfigMistake> {
        let bad = |msg: String| ConfigMistake::new(format!("policy.{msg}"));
        let timezone = if self.timezone == DEFAULT_TIMEZONE {
            TimeZone::UTC
        } else {
            jiff::tz::db().get(&self.timezone).map_err(|e| {
                bad(format!(
                    "timezone {:?} is not a time zone this system knows ({e}): use an IANA name such as \"Europe/Berlin\" (see /usr/share/zoneinfo), or install the tz database (package tzdata)",
                    self.timezone
                ))
            })?
        };
        let mut windows = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            let at = |key: &str| format!("windows[{i}].{key}");
            windows.push(Window {
                days: parse_days(w.days.as_ref())
                    .map_err(|e| bad(format!("{}: {e}", at("days"))))?,
                start: parse_time(&w.start).map_err(|e| bad(format!("{}: {e}", at("start"))))?,
                end: parse_time(&w.end).map_err(|e| bad(format!("{}: {e}", at("end"))))?,
            });
        }
        let blackouts = self
            .blackout_dates
            .iter()
            .map(|text| parse_blackout(text).map_err(|e| bad(format!("blackout_dates: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if !self.soak_hours.is_finite() || !(0.0..=MAX_SOAK_HOURS).contains(&self.soak_hours) {
            return Err(bad(format!(
                "soak_hours = {} must be a number of hours from 0 to {MAX_SOAK_HOURS}",
                self.soak_hours
            )));
        }
        let soak = SignedDuration::from_secs_f64(self.soak_hours * 3600.0);
        Ok(Policy {
            timezone,
            timezone_name: self.timezone.clone(),
            windows,
            blackouts,
            critical_bypasses_windows: self.critical_bypasses_windows,
            pin: self.pin.clone(),
            max_version: self.max_version.clone(),
            exclude_versions: self.exclude_versions.clone(),
            soak,
            auto: self.auto,
        })
    }
}

impl Policy {
    /// Why `version` is not allowed by `pin`, `max_version` or
    /// `exclude_versions`; `None` if it is.
    pub fn refuses_version(&self, version: &Version) -> Option<String> {
        if let Some(pin) = &self.pin {
            if !pin.matches(version) {
                return Some(format!("it does not match policy.pin \"{pin}\""));
            }
        }
        if let Some(max) = &self.max_version {
            if version > max {
                return Some(format!("it is above policy.max_version {max}"));
            }
        }
        if self.exclude_versions.contains(version) {
            return Some("it is listed in policy.exclude_versions".into());
        }
        None
    }

    /// The release to move to: `explicit` if the policy allows it (an
    /// error names the rule otherwise), else the highest release of the
    /// channel the policy allows. `None`: nothing the policy allows is at
    /// or above `installed` (the policy never downgrades).
    pub fn choose_target(
        &self,
        channel: &ChannelIndex,
        installed: Option<&Version>,
        explicit: Option<&Version>,
    ) -> Result<Option<Version>, PolicyError> {
        if let Some(version) = explicit {
            return match self.refuses_version(version) {
                Some(reason) => Err(PolicyError::VersionRefused {
                    version: version.clone(),
                    reason,
                }),
                None => Ok(Some(version.clone())),
            };
        }
        // The index was validated: every key parses (a key that somehow
        // does not is skipped, never installed).
        let best = channel
            .releases
            .keys()
            .filter_map(|key| key.parse::<Version>().ok())
            .filter(|v| self.refuses_version(v).is_none())
            .max();
        Ok(best.filter(|best| installed.is_none_or(|current| best >= current)))
    }

    /// Whether `pin`, `max_version` or `exclude_versions` is set.
    pub fn has_version_rules(&self) -> bool {
        self.pin.is_some() || self.max_version.is_some() || !self.exclude_versions.is_empty()
    }

    /// The version rules that are set, for messages that explain a target
    /// below `latest` (`policy pin "~2.1", max_version 2.1.9`).
    pub fn describe_version_rules(&self) -> String {
        let mut rules = Vec::new();
        if let Some(pin) = &self.pin {
            rules.push(format!("pin \"{pin}\""));
        }
        if let Some(max) = &self.max_version {
            rules.push(format!("max_version {max}"));
        }
        if !self.exclude_versions.is_empty() {
            let list: Vec<String> = self
                .exclude_versions
                .iter()
                .map(|v| v.to_string())
                .collect();
            rules.push(format!("exclude_versions [{}]", list.join(", ")));
        }
        if rules.is_empty() {
            "no version rules".into()
        } else {
            format!("policy {}", rules.join(", "))
        }
    }

    /// Whether an unattended run may install `release` at `now`, and if
    /// not, why and from when.
    pub fn gate(&self, release: &ReleaseFacts, now: Timestamp) -> Gate {
        // Before any rule: no window or wave makes a known-bad release
        // good, and only a newer release or an operator moves on.
        if let Some(rolled_back) = &release.rolled_back_here {
            return Gate::Deferred {
                reason: rolled_back.describe(),
                next_allowed_at: None,
            };
        }
        if !self.auto {
            return Gate::Deferred {
                reason: "policy.auto = false: unattended runs never install; run `ferry apply` to install".into(),
                next_allowed_at: None,
            };
        }
        let bypass = release.critical && self.critical_bypasses_windows;
        let mut reasons = Vec::new();
        let mut earliest = now;
        if !bypass && !self.soak.is_zero() {
            let soaked = release
                .created
                .checked_add(self.soak)
                .unwrap_or(Timestamp::MAX);
            if now < soaked {
                reasons.push(format!(
                    "{} is soaking until {soaked} (published {}, policy.soak_hours = {})",
                    release.version,
                    release.created,
                    self.soak.as_secs_f64() / 3600.0
                ));
                earliest = soaked;
            }
        }
        if let Some(wave) = &release.wave {
            if now < wave.opens_at {
                reasons.push(format!(
                    "this node is in {} of the rollout of {}, which opens at {} (its position: \
                     {:.2} of 100)",
                    wave.describe(),
                    release.version,
                    wave.opens_at,
                    wave.position()
                ));
                earliest = earliest.max(wave.opens_at);
            }
        }
        if let Some(blackout) = self.blackout_on(self.local_date(now)) {
            reasons.push(format!(
                "{blackout} is a blackout date (policy.blackout_dates)"
            ));
        }
        let windows: &[Window] = if bypass { &[] } else { &self.windows };
        if !windows.is_empty() && !self.in_window(windows, now) {
            reasons.push(format!(
                "outside the maintenance windows ({} {})",
                describe_windows(windows),
                self.timezone_name
            ));
        }
        if reasons.is_empty() {
            return Gate::Open;
        }
        Gate::Deferred {
            reason: reasons.join("; "),
            next_allowed_at: self.next_open(windows, earliest),
        }
    }

    /// The one line an unattended run prints when it defers: what, why,
    /// and when it may install next (UTC, and local in `timezone`).
    /// `None` when the gate is open.
    pub fn describe_deferral(&self, version: &Version, gate: &Gate) -> Option<String> {
        let reason = gate.reason()?;
        let next = match gate {
            Gate::AfterFollowers { .. } => "the next unattended run looks again".into(),
            _ => match gate.next_allowed_at() {
                Some(at) => format!(
                    "next allowed at {at} ({} {})",
                    self.local(at).strftime("%Y-%m-%d %H:%M"),
                    self.timezone_name
                ),
                None => "it will not install unattended".into(),
            },
        };
        Some(format!("not installing {version} now: {reason}; {next}"))
    }

    /// The first instant at or after `from` that lies in one of `windows`
    /// (any instant if there are none) on a date that is not blacked out.
    fn next_open(&self, windows: &[Window], from: Timestamp) -> Option<Timestamp> {
        let first_day = self.local_date(from);
        if windows.is_empty() {
            return self.skip_blackouts(from, Timestamp::MAX);
        }
        // Past the last blackout every week looks the same, so a week
        // beyond it (and a day before `from`, for windows crossing
        // midnight) holds the answer if there is one.
        let last_blackout = self.blackouts.iter().map(|b| b.last).max();
        let horizon = last_blackout.map_or(first_day, |d| d.max(first_day));
        let mut day = first_day.yesterday().ok()?;
        let end = horizon.checked_add(jiff::Span::new().days(8)).ok()?;
        let mut best: Option<Timestamp> = None;
        while day <= end {
            if best.is_some_and(|b| b <= self.day_start(day)) {
                break;
            }
            for window in windows {
                if !window.days[day.weekday().to_monday_zero_offset() as usize] {
                    continue;
                }
                let Some((open, close)) = self.window_on(window, day) else {
                    continue;
                };
                if close <= from {
                    continue;
                }
                if let Some(at) = self.skip_blackouts(open.max(from), close) {
                    best = Some(best.map_or(at, |b| b.min(at)));
                }
            }
            day = day.tomorrow().ok()?;
        }
        best
    }

    /// The first instant in `[at, before)` whose local date is not blacked
    /// out.
    fn skip_blackouts(&self, mut at: Timestamp, before: Timestamp) -> Option<Timestamp> {
        while let Some(blackout) = self.blackout_on(self.local_date(at)) {
            at = self.day_start(blackout.last.tomorrow().ok()?);
        }
        (at < before).then_some(at)
    }

    /// Whether `now` lies in one of `windows`: in one opened today or,
    /// crossing midnight, yesterday.
    fn in_window(&self, windows: &[Window], now: Timestamp) -> bool {
        let today = self.local_date(now);
        let days = [today.yesterday().ok(), Some(today)];
        windows.iter().any(|w| {
            days.iter().flatten().any(|day| {
                w.days[day.weekday().to_monday_zero_offset() as usize]
                    && self
                        .window_on(w, *day)
                        .is_some_and(|(open, close)| open <= now && now < close)
            })
        })
    }

    /// The real instants `window` opens and closes when it starts on
    /// `day`; `None` when a DST change leaves it no time that day.
    fn window_on(&self, window: &Window, day: Date) -> Option<(Timestamp, Timestamp)> {
        let end_day = if window.end <= window.start {
            day.tomorrow().ok()?
        } else {
            day
        };
        // "Compatible" resolution: a local time skipped by a DST gap maps
        // to the instant the clocks jumped to, so a window inside the gap
        // opens and closes at the same instant, i.e. not at all.
        let open = self.instant(day, window.start)?;
        let close = self.instant(end_day, window.end)?;
        (open < close).then_some((open, close))
    }

    fn instant(&self, day: Date, time: Time) -> Option<Timestamp> {
        self.timezone
            .to_ambiguous_zoned(day.to_datetime(time))
            .compatible()
            .ok()
            .map(|z| z.timestamp())
    }

    /// Local midnight of `day` (or the first instant of it, where a DST
    /// change skips midnight).
    fn day_start(&self, day: Date) -> Timestamp {
        day.to_zoned(self.timezone.clone())
            .and_then(|z| z.start_of_day())
            .map_or(Timestamp::MAX, |z| z.timestamp())
    }

    pub fn local_date(&self, at: Timestamp) -> Date {
        at.to_zoned(self.timezone.clone()).date()
    }

    /// `at` in the policy's time zone, for people.
    pub fn local(&self, at: Timestamp) -> Zoned {
        at.to_zoned(self.timezone.clone())
    }

    fn blackout_on(&self, day: Date) -> Option<&Blackout> {
        self.blackouts
            .iter()
            .find(|b| b.first <= day && day <= b.last)
    }
}

impl fmt::Display for Blackout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..{}", self.first, self.last)
        }
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn describe_windows(windows: &[Window]) -> String {
    let text: Vec<String> = windows
        .iter()
        .map(|w| {
            let days = if w.days.iter().all(|d| *d) {
                "daily".to_string()
            } else {
                let names: Vec<&str> = DAY_NAMES
                    .iter()
                    .zip(w.days)
                    .filter_map(|(name, on)| on.then_some(*name))
                    .collect();
                names.join(",")
            };
            format!(
                "{days} {}-{}",
                w.start.strftime("%H:%M"),
                w.end.strftime("%H:%M")
            )
        })
        .collect();
    text.join(", ")
}

/// Why one `[policy]` value cannot be read; [`PolicyConfig::compile`]
/// names the key.
#[derive(Debug, Error)]
enum BadValue {
    #[error("{0:?} is not \"daily\" or a list such as [\"mon\", \"tue\"]")]
    DaysKeyword(String),
    #[error("the list is empty, so the window never opens: list days, or write \"daily\"")]
    NoDays,
    #[error("{0:?} is not a day: use mon, tue, wed, thu, fri, sat, sun (or days = \"daily\")")]
    Day(String),
    #[error("{0:?} is not a time of day as \"HH:MM\" (00:00 to 23:59)")]
    Time(String),
    #[error("{text:?}: {part:?} is not a date as \"YYYY-MM-DD\" ({source}); write a date or a range \"2026-12-20..2027-01-02\"")]
    Date {
        text: String,
        part: String,
        #[source]
        source: jiff::Error,
    },
    #[error("{0:?} ends before it starts: write the earlier date first")]
    Reversed(String),
}

fn parse_days(days: Option<&DaysConfig>) -> Result<[bool; 7], BadValue> {
    let names = match days {
        None => return Ok([true; 7]),
        Some(DaysConfig::Keyword(word)) if word == "daily" => return Ok([true; 7]),
        Some(DaysConfig::Keyword(word)) => return Err(BadValue::DaysKeyword(word.clone())),
        Some(DaysConfig::List(names)) => names,
    };
    if names.is_empty() {
        return Err(BadValue::NoDays);
    }
    let mut out = [false; 7];
    for name in names {
        let Some(i) = DAY_NAMES.iter().position(|d| d == name) else {
            return Err(BadValue::Day(name.clone()));
        };
        out[i] = true;
    }
    Ok(out)
}

/// `"HH:MM"`, 00:00 to 23:59, exactly two digits each.
fn parse_time(text: &str) -> Result<Time, BadValue> {
    let wrong = || BadValue::Time(text.to_string());
    let (h, m) = text.split_once(':').ok_or_else(wrong)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(wrong());
    }
    let (h, m): (i8, i8) = (
        h.parse().map_err(|_| wrong())?,
        m.parse().map_err(|_| wrong())?,
    );
    Time::new(h, m, 0, 0).map_err(|_| wrong())
}

/// `"YYYY-MM-DD"` or `"YYYY-MM-DD..YYYY-MM-DD"`.
fn parse_blackout(text: &str) -> Result<Blackout, BadValue> {
    let date = |s: &str| {
        s.trim().parse::<Date>().map_err(|source| BadValue::Date {
            text: text.to_string(),
            part: s.to_string(),
            source,
        })
    };
    let (first, last) = match text.split_once("..") {
        Some((a, b)) => (date(a)?, date(b)?),
        None => {
            let d = date(text)?;
            (d, d)
        }
    };
    if last < first {
        return Err(BadValue::Reversed(text.to_string()));
    }
    Ok(Blackout { first, last })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use manifests::index::ManifestRef;
    use manifests::Sha256Digest;

    use super::*;

    fn policy(toml_text: &str) -> Policy {
        try_policy(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
    }

    fn try_policy(toml_text: &str) -> anyhow::Result<Policy> {
        let config: PolicyConfig = toml::from_str(toml_text)?;
        Ok(config.compile()?)
    }

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// An ordinary release published long ago: only windows and blackouts
    /// matter for it.
    fn old_release() -> ReleaseFacts {
        ReleaseFacts {
            version: Version::new(2, 0, 0),
            created: t("2020-01-01T00:00:00Z"),
            critical: false,
            wave: None,
            rolled_back_here: None,
        }
    }

    /// `next_allowed_at` of a deferral; panics on `Open`.
    #[track_caller]
    fn deferred_until(gate: Gate) -> (String, Option<Timestamp>) {
        match gate {
            Gate::Deferred {
                reason,
                next_allowed_at,
            } => (reason, next_allowed_at),
            other => panic!("expected a deferral by the policy, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_next(p: &Policy, release: &ReleaseFacts, now: &str, next: &str) {
        let (reason, at) = deferred_until(p.gate(release, t(now)));
        assert_eq!(at, Some(t(next)), "at {now}: {reason}");
        // The promised instant really is open, and the instant before it
        // is not: it is the *first* allowed one.
        assert_eq!(p.gate(release, t(next)), Gate::Open, "at {next}");
        let before = t(next) - SignedDuration::from_secs(1);
        if before >= t(now) {
            assert!(
                matches!(p.gate(release, before), Gate::Deferred { .. }),
                "{before} is already open, so {next} is not the first allowed instant"
            );
        }
    }

    #[test]
    fn no_rules_means_always_open() {
        let p = policy("");
        for now in ["2026-03-29T01:30:00Z", "2030-12-24T12:00:00Z"] {
            assert_eq!(p.gate(&old_release(), t(now)), Gate::Open);
        }
        assert_eq!(p.timezone_name, "UTC");
    }

    #[test]
    fn weekday_windows_open_and_point_at_the_next_opening() {
        // 2030-06-03 is a Monday.
        let p = policy(
            r#"windows = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "02:00", end = "04:00" }]"#,
        );
        let r = old_release();
        assert_eq!(p.gate(&r, t("2030-06-03T02:00:00Z")), Gate::Open);
        assert_eq!(p.gate(&r, t("2030-06-03T03:59:59Z")), Gate::Open);
        // The end is exclusive.
        assert_next(&p, &r, "2030-06-03T04:00:00Z", "2030-06-04T02:00:00Z");
        assert_next(&p, &r, "2030-06-03T01:00:00Z", "2030-06-03T02:00:00Z");
        // Friday evening, Saturday, Sunday: Monday morning.
        for now in [
            "2030-06-07T05:00:00Z",
            "2030-06-08T03:00:00Z",
            "2030-06-09T23:59:00Z",
        ] {
            assert_next(&p, &r, now, "2030-06-10T02:00:00Z");
        }
        let (reason, _) = deferred_until(p.gate(&r, t("2030-06-08T03:00:00Z")));
        assert!(
            reason
                .contains("outside the maintenance windows (mon,tue,wed,thu,fri 02:00-04:00 UTC)"),
            "{reason}"
        );
    }

    #[test]
    fn a_window_crossing_midnight_belongs_to_its_start_day() {
        let p = policy(r#"windows = [{ days = ["fri"], start = "23:00", end = "02:00" }]"#);
        let r = old_release();
        // Friday 2030-06-07 23:00 to Saturday 02:00.
        assert_eq!(p.gate(&r, t("2030-06-07T23:00:00Z")), Gate::Open);
        assert_eq!(p.gate(&r, t("2030-06-08T01:30:00Z")), Gate::Open);
        assert_next(&p, &r, "2030-06-08T02:00:00Z", "2030-06-14T23:00:00Z");
        // Friday 00:30 is the tail of Thursday's night, and Thursday has no window.
        assert_next(&p, &r, "2030-06-07T00:30:00Z", "2030-06-07T23:00:00Z");
        // Saturday late evening is not Friday.
        assert_next(&p, &r, "2030-06-08T23:30:00Z", "2030-06-14T23:00:00Z");
    }

    #[test]
    fn several_windows_and_equal_start_and_end() {
        let p = policy(
            r#"
windows = [
  { days = ["sat", "sun"], start = "00:00", end = "00:00" },
  { days = "daily", start = "12:00", end = "13:00" },
]
"#,
        );
        let r = old_release();
        // All of Saturday and Sunday (2030-06-08/09).
        for now in [
            "2030-06-08T00:00:00Z",
            "2030-06-08T17:00:00Z",
            "2030-06-09T23:59:59Z",
        ] {
            assert_eq!(p.gate(&r, t(now)), Gate::Open, "{now}");
        }
        assert_next(&p, &r, "2030-06-10T00:00:00Z", "2030-06-10T12:00:00Z");
        assert_next(&p, &r, "2030-06-14T13:00:00Z", "2030-06-15T00:00:00Z");
    }

    #[test]
    fn dst_spring_forward_skips_a_window_inside_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let p = policy(
            r#"
timezone = "Europe/Berlin"
windows = [{ start = "02:00", end = "03:00" }]
"#,
        );
        let r = old_release();
        // The day before: 02:00 CET is 01:00 UTC.
        assert_eq!(p.gate(&r, t("2026-03-28T01:30:00Z")), Gate::Open);
        // On the day the hour does not exist: no window, the next is
        // Monday 02:00 CEST (00:00 UTC).
        assert_next(&p, &r, "2026-03-28T02:00:00Z", "2026-03-30T00:00:00Z");
        assert_next(&p, &r, "2026-03-29T00:59:59Z", "2026-03-30T00:00:00Z");
        for now in ["2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"] {
            assert!(matches!(p.gate(&r, t(now)), Gate::Deferred { .. }));
        }
        // A wider window keeps its real hours around the gap.
        let wide = policy(
            r#"
timezone = "Europe/Berlin"
windows = [{ start = "01:00", end = "04:00" }]
"#,
        );
        // 01:00 CET = 00:00 UTC; 04:00 CEST = 02:00 UTC: two real hours.
        assert_eq!(wide.gate(&r, t("2026-03-29T00:00:00Z")), Gate::Open);
        assert_eq!(wide.gate(&r, t("2026-03-29T01:59:59Z")), Gate::Open);
        assert_next(&wide, &r, "2026-03-29T02:00:00Z", "2026-03-29T23:00:00Z");
    }

    #[test]
    fn dst_fall_back_lengthens_a_window_over_the_repeated_hour() {
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC), so
        // 02:00-03:00 happens twice: from 00:00 to 02:00 UTC.
        let p = policy(
            r#"
timezone = "Europe/Berlin"
windows = [{ start = "02:00", end = "03:00" }]
"#,
        );
        let r = old_release();
        assert_eq!(p.gate(&r, t("2026-10-25T00:00:00Z")), Gate::Open);
        assert_eq!(p.gate(&r, t("2026-10-25T01:30:00Z")), Gate::Open);
        assert_next(&p, &r, "2026-10-25T02:00:00Z", "2026-10-26T01:00:00Z");
    }

    #[test]
    fn blackout_dates_hold_everything_back_in_the_policy_time_zone() {
        let p = policy(
            r#"
timezone = "Europe/Berlin"
blackout_dates = ["2026-12-24", "2026-12-27..2027-01-02"]
critical_bypasses_windows = true
"#,
        );
        let r = old_release();
        let critical = ReleaseFacts {
            critical: true,
            ..old_release()
        };
        // 2026-12-23 23:30 UTC is already the 24th in Berlin.
        let (reason, next) = deferred_until(p.gate(&critical, t("2026-12-23T23:30:00Z")));
        assert!(reason.contains("2026-12-24 is a blackout date"), "{reason}");
        assert_eq!(next, Some(t("2026-12-24T23:00:00Z")));
        assert_eq!(p.gate(&r, t("2026-12-23T22:59:59Z")), Gate::Open);
        assert_next(&p, &r, "2026-12-30T12:00:00Z", "2027-01-02T23:00:00Z");
        assert_next(
            &p,
            &critical,
            "2026-12-27T00:00:00Z",
            "2027-01-02T23:00:00Z",
        );
        let (reason, _) = deferred_until(p.gate(&r, t("2026-12-30T12:00:00Z")));
        assert!(reason.contains("2026-12-27..2027-01-02"), "{reason}");
    }

    #[test]
    fn a_night_window_is_cut_at_a_blackout_midnight_and_resumes_after_it() {
        let p = policy(
            r#"
windows = [{ start = "23:00", end = "02:00" }]
blackout_dates = ["2026-12-20..2026-12-22"]
"#,
        );
        let r = old_release();
        assert_eq!(p.gate(&r, t("2026-12-19T23:30:00Z")), Gate::Open);
        // Past midnight it is the 20th: blacked out. The night of the 22nd
        // opens at 23:00, still the 22nd, so the first allowed instant is
        // midnight, inside that same window.
        assert_next(&p, &r, "2026-12-20T00:30:00Z", "2026-12-23T00:00:00Z");
    }

    #[test]
    fn soak_delays_a_release_past_its_publication() {
        let p = policy("soak_hours = 48");
        let r = ReleaseFacts {
            created: t("2030-06-03T10:00:00Z"),
            ..old_release()
        };
        let (reason, _) = deferred_until(p.gate(&r, t("2030-06-04T10:00:00Z")));
        assert!(
            reason.contains("2.0.0 is soaking until 2030-06-05T10:00:00Z"),
            "{reason}"
        );
        assert_next(&p, &r, "2030-06-04T10:00:00Z", "2030-06-05T10:00:00Z");
        // Soak and windows: the first window after the soak.
        let both = policy(
            r#"
soak_hours = 1.5
windows = [{ start = "10:00", end = "11:00" }]
"#,
        );
        // Soaked at 11:30, after that day's window closed: the next day's.
        assert_next(&both, &r, "2030-06-03T10:30:00Z", "2030-06-04T10:00:00Z");
        // Soaked at 10:30, inside the window: then, not at its opening.
        let earlier = ReleaseFacts {
            created: t("2030-06-03T09:00:00Z"),
            ..old_release()
        };
        assert_next(
            &both,
            &earlier,
            "2030-06-03T09:30:00Z",
            "2030-06-03T10:30:00Z",
        );
    }

    #[test]
    fn critical_releases_skip_windows_and_soak_only_when_allowed() {
        let text = r#"
soak_hours = 72
windows = [{ days = ["sun"], start = "03:00", end = "04:00" }]
"#;
        let critical = ReleaseFacts {
            version: Version::new(2, 0, 1),
            created: t("2030-06-03T10:00:00Z"),
            critical: true,
            wave: None,
            rolled_back_here: None,
        };
        let now = t("2030-06-03T11:00:00Z");
        let strict = policy(text);
        let (reason, next) = deferred_until(strict.gate(&critical, now));
        assert!(
            reason.contains("soaking") && reason.contains("outside"),
            "{reason}"
        );
        // Soaked on Thursday 10:00; the next Sunday window after that.
        assert_eq!(next, Some(t("2030-06-09T03:00:00Z")));
        let bypassing = policy(&format!("{text}\ncritical_bypasses_windows = true"));
        assert_eq!(bypassing.gate(&critical, now), Gate::Open);
        // An ordinary release still waits under the same policy.
        let ordinary = ReleaseFacts {
            critical: false,
            ..critical
        };
        assert!(matches!(
            bypassing.gate(&ordinary, now),
            Gate::Deferred { .. }
        ));
    }

    /// A release created at 2030-06-03 10:00 whose wave for this node
    /// opens `after_hours` later (wave 2 of 3, 25 %).
    fn in_wave(after_hours: i64, critical: bool) -> ReleaseFacts {
        let created = t("2030-06-03T10:00:00Z");
        ReleaseFacts {
            version: Version::new(2, 0, 0),
            created,
            critical,
            wave: Some(crate::waves::WavePlace {
                index: 2,
                count: 3,
                percent: 25,
                opens_at: created
                    .checked_add(SignedDuration::from_hours(after_hours))
                    .unwrap(),
                draw: 1 << 62,
                leader: false,
            }),
            rolled_back_here: None,
        }
    }

    #[test]
    fn a_release_waits_for_the_nodes_wave() {
        let p = policy("");
        let r = in_wave(4, false);
        let (reason, next) = deferred_until(p.gate(&r, t("2030-06-03T12:00:00Z")));
        assert_eq!(next, Some(t("2030-06-03T14:00:00Z")));
        assert!(
            reason.contains(
                "this node is in wave 2 of 3 (25%) of the rollout of 2.0.0, which opens at \
                 2030-06-03T14:00:00Z (its position: 25.00 of 100)"
            ),
            "{reason}"
        );
        assert!(matches!(
            p.gate(&r, t("2030-06-03T13:59:59Z")),
            Gate::Deferred { .. }
        ));
        assert_eq!(p.gate(&r, t("2030-06-03T14:00:00Z")), Gate::Open);
        assert_eq!(p.gate(&r, t("2030-06-10T00:00:00Z")), Gate::Open);
        // A wave that opens at once holds nothing back.
        assert_eq!(
            p.gate(&in_wave(0, false), t("2030-06-03T10:00:00Z")),
            Gate::Open
        );
    }

    #[test]
    fn the_wave_soak_and_windows_all_must_allow() {
        let r = in_wave(4, false);
        let now = "2030-06-03T11:00:00Z";
        // The later of soak and wave.
        assert_next(&policy("soak_hours = 2"), &r, now, "2030-06-03T14:00:00Z");
        let (reason, _) = deferred_until(policy("soak_hours = 6").gate(&r, t(now)));
        assert!(
            reason.contains("soaking") && reason.contains("wave 2 of 3"),
            "{reason}"
        );
        assert_next(&policy("soak_hours = 6"), &r, now, "2030-06-03T16:00:00Z");
        // The first window after the wave opens: that day's is over at 14:00.
        let nights = r#"windows = [{ start = "02:00", end = "04:00" }]"#;
        assert_next(&policy(nights), &r, now, "2030-06-04T02:00:00Z");
        // A window already open when the wave opens: the wave's instant.
        let afternoons = r#"windows = [{ start = "13:00", end = "18:00" }]"#;
        assert_next(&policy(afternoons), &r, now, "2030-06-03T14:00:00Z");
        // A blackout on the day the wave opens: the day after.
        let frozen = r#"blackout_dates = ["2030-06-03"]"#;
        assert_next(&policy(frozen), &r, now, "2030-06-04T00:00:00Z");
        // Once the wave is open only the windows speak.
        let (reason, _) = deferred_until(policy(nights).gate(&r, t("2030-06-03T15:00:00Z")));
        assert!(!reason.contains("wave"), "{reason}");
    }

    #[test]
    fn a_critical_release_skips_windows_and_soak_but_not_its_wave() {
        let p = policy(
            r#"
soak_hours = 72
windows = [{ days = ["sun"], start = "03:00", end = "04:00" }]
critical_bypasses_windows = true
"#,
        );
        let r = in_wave(4, true);
        let (reason, next) = deferred_until(p.gate(&r, t("2030-06-03T11:00:00Z")));
        assert_eq!(next, Some(t("2030-06-03T14:00:00Z")), "{reason}");
        assert!(
            !reason.contains("soaking") && !reason.contains("outside"),
            "{reason}"
        );
        assert_eq!(p.gate(&r, t("2030-06-03T14:00:00Z")), Gate::Open);
    }

    #[test]
    fn auto_false_never_installs_unattended() {
        let p = policy("auto = false");
        let (reason, next) = deferred_until(p.gate(&old_release(), t("2030-06-03T10:00:00Z")));
        assert_eq!(next, None);
        assert!(reason.contains("policy.auto = false"), "{reason}");
    }

    fn channel(versions: &[&str]) -> ChannelIndex {
        let releases: BTreeMap<String, ManifestRef> = versions
            .iter()
            .map(|v| {
                let version: Version = v.parse().unwrap();
                (
                    v.to_string(),
                    ManifestRef {
                        path: manifests::layout::manifest(&version),
                        sha256: Sha256Digest::of(v.as_bytes()),
                        size: 1,
                        created: t("2030-01-01T00:00:00Z"),
                    },
                )
            })
            .collect();
        ChannelIndex {
            latest: versions.iter().map(|v| v.parse().unwrap()).max().unwrap(),
            releases,
        }
    }

    #[test]
    fn the_target_is_the_highest_release_every_version_rule_allows() {
        let c = channel(&["1.0.0", "2.0.0", "2.1.0", "2.1.3", "2.2.0", "3.0.0"]);
        let v = |s: &str| s.parse::<Version>().unwrap();
        let target = |rules: &str, installed: Option<&str>| {
            policy(rules)
                .choose_target(&c, installed.map(v).as_ref(), None)
                .unwrap()
                .map(|v| v.to_string())
        };
        assert_eq!(target("", None).as_deref(), Some("3.0.0"));
        assert_eq!(target(r#"pin = "~2.1""#, None).as_deref(), Some("2.1.3"));
        assert_eq!(target(r#"pin = "=2.1.0""#, None).as_deref(), Some("2.1.0"));
        assert_eq!(
            target(r#"max_version = "2.1.0""#, None).as_deref(),
            Some("2.1.0")
        );
        assert_eq!(
            target(r#"exclude_versions = ["3.0.0", "2.2.0"]"#, None).as_deref(),
            Some("2.1.3")
        );
        assert_eq!(
            target(
                "pin = \"^2\"\nmax_version = \"2.2.0\"\nexclude_versions = [\"2.2.0\"]",
                Some("1.0.0")
            )
            .as_deref(),
            Some("2.1.3")
        );
        // Nothing matches.
        assert_eq!(target(r#"pin = "^4""#, None), None);
        // Never a downgrade; the installed version itself is a target.
        assert_eq!(target(r#"pin = "~2.1""#, Some("2.2.0")), None);
        assert_eq!(
            target(r#"pin = "~2.1""#, Some("2.1.3")).as_deref(),
            Some("2.1.3")
        );
    }

    #[test]
    fn an_explicit_version_must_satisfy_the_version_rules() {
        let c = channel(&["1.0.0", "2.0.0", "3.0.0"]);
        let p = policy("max_version = \"2.0.0\"\nexclude_versions = [\"1.0.0\"]");
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert_eq!(
            p.choose_target(&c, None, Some(&v("2.0.0"))),
            Ok(Some(v("2.0.0")))
        );
        let err = p.choose_target(&c, None, Some(&v("3.0.0"))).unwrap_err();
        assert!(
            err.to_string().contains("above policy.max_version 2.0.0"),
            "{err}"
        );
        assert!(err.to_string().contains("--ignore-policy"), "{err}");
        let err = p.choose_target(&c, None, Some(&v("1.0.0"))).unwrap_err();
        assert!(err.to_string().contains("exclude_versions"), "{err}");
    }

    #[test]
    fn mistakes_are_refused_with_the_key_named() {
        let cases = [
            (
                r#"timezone = "Mars/Olympus""#,
                "policy.timezone \"Mars/Olympus\"",
            ),
            (
                r#"windows = [{ days = ["monday"], start = "02:00", end = "03:00" }]"#,
                "policy.windows[0].days: \"monday\" is not a day",
            ),
            (
                r#"windows = [{ days = [], start = "02:00", end = "03:00" }]"#,
                "policy.windows[0].days: the list is empty",
            ),
            (
                r#"windows = [{ days = "weekly", start = "02:00", end = "03:00" }]"#,
                "policy.windows[0].days: \"weekly\"",
            ),
            (
                r#"windows = [{ start = "2:00", end = "03:00" }]"#,
                "policy.windows[0].start: \"2:00\" is not a time of day",
            ),
            (
                r#"windows = [{ start = "02:00", end = "24:00" }]"#,
                "policy.windows[0].end: \"24:00\"",
            ),
            (
                r#"blackout_dates = ["2026-12-31..2026-12-01"]"#,
                "ends before it starts",
            ),
            (
                r#"blackout_dates = ["Christmas"]"#,
                "\"Christmas\" is not a date",
            ),
            ("soak_hours = -1", "policy.soak_hours = -1"),
            (
                "windows = [{ start = \"02:00\", end = \"03:00\", tz = \"UTC\" }]",
                "unknown field `tz`",
            ),
            ("sok_hours = 3", "unknown field `sok_hours`"),
            (r#"pin = "~2.x.banana""#, "pin"),
        ];
        for (text, expected) in cases {
            let err = try_policy(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        // And valid ones, to show the cases above fail for their reason.
        let p = policy(
            r#"
timezone = "America/New_York"
windows = [{ days = ["sat"], start = "00:00", end = "23:59" }]
blackout_dates = ["2026-11-26", "2026-12-31..2027-01-01"]
pin = "~2.1"
max_version = "2.1.9"
exclude_versions = ["2.1.4"]
soak_hours = 0.5
auto = false
"#,
        );
        assert_eq!(p.blackouts.len(), 2);
        assert_eq!(p.soak, SignedDuration::from_mins(30));
    }
}

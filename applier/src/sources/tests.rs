use super::*;
use std::cell::Cell;

/// A source that serves nothing; only its name and order matter here.
struct Named(&'static str, RetryPolicy);

impl Transport for Named {
    fn url(&self, path: &str) -> String {
        format!("test://{}/{path}", self.0)
    }
    fn retry_policy(&self) -> &RetryPolicy {
        &self.1
    }
    fn fetch(&self, path: &str, _: u64, _: u64, _: &mut dyn Write) -> Result<u64, FetchError> {
        Err(FetchError::NotFound {
            url: self.url(path),
        })
    }
}

/// The sources `names`, labelled as [`Sources::open`] labels them.
fn sources(names: &[&'static str]) -> Sources {
    Sources::new(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let t = Box::new(Named(n, RetryPolicy::never())) as Box<dyn Transport>;
                let label = match i {
                    0 => format!("primary {}", t.url("")),
                    i => format!("mirror {i} {}", t.url("")),
                };
                (label, t)
            })
            .collect(),
    )
}

fn name(t: &dyn Transport) -> String {
    t.url("")
}

/// What a source that lacks `url` answers.
fn not_found(url: &str) -> NodeError {
    FetchError::NotFound { url: url.into() }.into()
}

#[test]
fn the_first_good_source_wins_and_bad_data_is_tried_last_afterwards() {
    let m = sources(&["a", "b", "c"]);
    let tried = RefCell::new(Vec::new());
    let got = m.first_good("objects/x", |t| {
        tried.borrow_mut().push(name(t));
        match name(t).as_str() {
            "test://a/" => Err(NodeError::verification("tampered")),
            "test://b/" => Err(not_found("test://b/objects/x")),
            _ => Ok(7),
        }
    });
    assert_eq!(got.unwrap(), 7);
    assert_eq!(*tried.borrow(), ["test://a/", "test://b/", "test://c/"]);
    assert_eq!(m.ranked(), [1, 2, 0], "a served bad data: it goes last");
}

#[test]
fn every_reason_is_reported_and_bad_data_makes_it_a_verification_failure() {
    let m = sources(&["a", "b"]);
    let err = m
        .first_good("objects/x", |t| -> Result<()> {
            Err(match name(t).as_str() {
                "test://a/" => not_found("test://a/objects/x"),
                _ => NodeError::verification("object objects/x is corrupt"),
            })
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NodeError::Verification(_)), "{text}");
    assert!(
        text.contains("primary test://a/: test://a/objects/x was not found"),
        "{text}"
    );
    assert!(
        text.contains("mirror 1 test://b/: verification failed: object"),
        "{text}"
    );

    let err = m
        .first_good("x", |_| -> Result<()> { Err(not_found("test://same/x")) })
        .unwrap_err();
    assert_eq!(err.to_string(), "test://same/x was not found");
}

#[test]
fn a_local_disk_error_stops_at_once() {
    let m = sources(&["a", "b"]);
    let calls = Cell::new(0);
    let err = m
        .first_good("x", |_| -> Result<()> {
            calls.set(calls.get() + 1);
            Err(NodeError::io("cannot write", std::io::Error::other("full")))
        })
        .unwrap_err();
    assert!(matches!(err, NodeError::Io { .. }), "{err}");
    assert_eq!(calls.get(), 1);
}

#[test]
fn a_single_source_is_called_directly() {
    let single = Sources::single(Box::new(Named("only", RetryPolicy::never())));
    let err = single
        .first_good("x", |_| -> Result<()> { Err(not_found("test://only/x")) })
        .unwrap_err();
    assert_eq!(err.to_string(), "test://only/x was not found");
}

/// A source that never answers: every fetch is refused at the connection.
struct Dead(RetryPolicy);

impl Transport for Dead {
    fn url(&self, path: &str) -> String {
        format!("test://dead/{path}")
    }
    fn retry_policy(&self) -> &RetryPolicy {
        &self.0
    }
    fn fetch(&self, path: &str, _: u64, _: u64, _: &mut dyn Write) -> Result<u64, FetchError> {
        Err(FetchError::Network {
            url: self.url(path),
            message: "connection refused".into(),
        })
    }
}

#[test]
fn a_source_that_does_not_answer_is_not_asked_again_in_the_run() {
    let m = Sources::new(vec![
        (
            "primary test://dead/".into(),
            Box::new(Dead(RetryPolicy::never())) as Box<dyn Transport>,
        ),
        (
            "mirror 1 test://b/".into(),
            Box::new(Named("b", RetryPolicy::never())),
        ),
    ]);
    let asked = RefCell::new(Vec::new());
    let fetch = |t: &dyn Transport| -> Result<u32> {
        asked.borrow_mut().push(name(t));
        match t.fetch("roots/1.json", 0, 1, &mut Vec::new()) {
            Err(e) if name(t) == "test://dead/" => Err(e.into()),
            _ => Ok(1),
        }
    };
    assert_eq!(m.first_good("roots/1.json", fetch).unwrap(), 1);
    assert_eq!(m.first_good("index.json", fetch).unwrap(), 1);
    assert_eq!(
        *asked.borrow(),
        ["test://dead/", "test://b/", "test://b/"],
        "the dead primary was asked once"
    );

    // When nothing else serves, the error still names it, with its reason.
    let err = m
        .first_good("objects/x", |t| -> Result<()> {
            Err(not_found(&t.url("objects/x")))
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("primary test://dead/: test://dead/roots/1.json: connection refused (earlier in this run; not asked again)"),
        "{err}"
    );
    assert!(
        err.contains("mirror 1 test://b/: test://b/objects/x was not found"),
        "{err}"
    );
}

#[test]
fn a_file_absent_from_one_source_and_unreachable_on_another_is_absent() {
    let m = Sources::new(vec![
        (
            "primary test://dead/".into(),
            Box::new(Dead(RetryPolicy::never())) as Box<dyn Transport>,
        ),
        (
            "mirror 1 test://b/".into(),
            Box::new(Named("b", RetryPolicy::never())),
        ),
    ]);
    let lookup = |t: &dyn Transport| -> Result<Option<()>> {
        match t.fetch("roots/2.json", 0, 1, &mut Vec::new()) {
            Ok(_) => Ok(Some(())),
            Err(FetchError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    assert!(m.first_present("roots/2.json", lookup).unwrap().is_none());

    // Every source down: an error, not the end of the walk.
    let m = Sources::new(vec![
        (
            "primary test://dead/".into(),
            Box::new(Dead(RetryPolicy::never())) as Box<dyn Transport>,
        ),
        (
            "mirror 1 test://dead/".into(),
            Box::new(Dead(RetryPolicy::never())),
        ),
    ]);
    assert!(m.first_present("roots/2.json", lookup).is_err());
}

#[test]
fn a_source_serving_a_bad_next_root_does_not_hide_a_good_one() {
    let m = sources(&["a", "b", "c"]);
    // a serves a root that does not verify, b has none, c has a good one:
    // c's is adopted, and a is tried last from then on.
    let lookup = |t: &dyn Transport| -> Result<Option<&'static str>> {
        match name(t).as_str() {
            "test://a/" => Err(NodeError::verification("refusing root version 2")),
            "test://b/" => Ok(None),
            _ => Ok(Some("root 2")),
        }
    };
    assert_eq!(
        m.first_present("roots/2.json", lookup).unwrap(),
        Some("root 2")
    );
    assert_eq!(m.ranked(), [1, 2, 0]);

    // Without c: b says there is none, so the walk ends there.
    let m = sources(&["a", "b"]);
    assert_eq!(m.first_present("roots/2.json", lookup).unwrap(), None);

    // When every source serves a bad one, the node refuses (exit 3).
    let m = sources(&["a", "a2"]);
    let err = m
        .first_present("roots/2.json", |_| -> Result<Option<()>> {
            Err(NodeError::verification("refusing root version 2"))
        })
        .unwrap_err();
    assert!(matches!(err, NodeError::Verification(_)), "{err}");
}

#[test]
fn configuration_mistakes_are_named() {
    let config = |mirrors: &[&str]| RepositoryConfig {
        url: "http://a/repo".into(),
        channel: "stable".into(),
        public_keys: vec![],
        ca_file: None,
        timeout_seconds: 30,
        retries: 0,
        mirrors: mirrors.iter().map(|s| s.to_string()).collect(),
        stall_timeout_seconds: None,
        min_bytes_per_second: 1024,
    };
    assert!(check_config(&config(&["https://b/repo", "file:///srv/repo"])).is_ok());
    let err = check_config(&config(&["ftp://b"])).unwrap_err().to_string();
    assert!(err.contains("repository.mirrors[0]"), "{err}");
    let err = check_config(&config(&["http://b", "http://b/"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("listed twice"), "{err}");
    assert!(check_config(&config(&["http://a/repo/"])).is_err());
}

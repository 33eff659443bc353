use super::*;

fn state(root_version: u64, keys: &[&str], index_serial: u64) -> TrustedState {
    TrustedState {
        index_serial,
        root_version,
        index_role_keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

#[test]
fn recording_never_lowers_a_serial_recorded_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    // A `ferry check` recorded serial 7 while this run, which loaded 5,
    // verified serial 6.
    state(1, &["k"], 7).save(dir.path()).unwrap();
    let mut ours = state(1, &["k"], 6);
    ours.record(dir.path()).unwrap();
    assert_eq!(ours.index_serial, 7);
    assert_eq!(TrustedState::load(dir.path()).unwrap(), state(1, &["k"], 7));

    // Higher: raised.
    let mut ours = state(1, &["k"], 9);
    ours.record(dir.path()).unwrap();
    assert_eq!(TrustedState::load(dir.path()).unwrap(), state(1, &["k"], 9));
}

#[test]
fn a_newer_root_decides_the_serial_even_when_it_reset_it() {
    // Root 2 changed the index keys: the serial starts again (fast-forward
    // recovery); it is not raised back to the old keys' serial.
    assert_eq!(
        merged(&state(1, &["old"], 90), &state(2, &["new"], 3)),
        state(2, &["new"], 3)
    );
    // And a run still under root 1 does not undo what root 2 recorded.
    assert_eq!(
        merged(&state(2, &["new"], 3), &state(1, &["old"], 90)),
        state(2, &["new"], 3)
    );
    // A state file from before roots (no keys): the higher serial, our keys.
    assert_eq!(
        merged(&state(0, &[], 4), &state(0, &["k"], 2)),
        state(0, &["k"], 4)
    );
}

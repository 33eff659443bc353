//! Root validation, thresholds and the successor rule, with real minisign
//! keys and signatures.

use std::collections::BTreeMap;
use std::io::Cursor;

use super::*;
use crate::canonical::to_canonical_json;

struct Key {
    pair: minisign::KeyPair,
    id: String,
    base64: String,
}

fn key() -> Key {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let base64 = pair.pk.to_base64();
    let mut keys = TrustedKeys::new();
    let id = keys.add_text(&base64, "test").unwrap().to_string();
    Key { pair, id, base64 }
}

fn sign(key: &Key, data: &[u8]) -> String {
    minisign::sign(
        Some(&key.pair.pk),
        &key.pair.sk,
        Cursor::new(data),
        Some("timestamp:0\tfile:roots/x.json"),
        Some("test"),
    )
    .unwrap()
    .into_string()
}

fn sign_all(keys: &[&Key], data: &[u8]) -> Vec<u8> {
    keys.iter()
        .map(|k| sign(k, data))
        .collect::<String>()
        .into_bytes()
}

fn root(version: u64, roles: [(&[&Key], u32); 3]) -> Root {
    let mut keys = BTreeMap::new();
    let mut spec = |(members, threshold): (&[&Key], u32)| RoleSpec {
        keys: members
            .iter()
            .map(|k| {
                keys.insert(k.id.clone(), k.base64.clone());
                k.id.clone()
            })
            .collect(),
        threshold,
    };
    let [r, i, m] = roles;
    let roles = Roles {
        root: spec(r),
        index: spec(i),
        manifests: spec(m),
    };
    Root {
        format: 1,
        kind: ROOT_TYPE.into(),
        version,
        expires: "2099-01-01T00:00:00Z".parse().unwrap(),
        keys,
        roles,
    }
}

fn bytes(root: &Root) -> Vec<u8> {
    to_canonical_json(root).unwrap()
}

#[test]
fn structural_mistakes_are_refused() {
    let (a, b) = (key(), key());
    let good = root(1, [(&[&a], 1), (&[&a, &b], 2), (&[&b], 1)]);
    good.validate().unwrap();

    let mut zero = good.clone();
    zero.roles.index.threshold = 0;
    let mut above = good.clone();
    above.roles.manifests.threshold = 2;
    let mut unlisted = good.clone();
    unlisted.roles.root.keys.push("0123456789ABCDEF".into());
    let mut twice = good.clone();
    twice.roles.root.keys.push(a.id.clone());
    let mut wrong_id = good.clone();
    let base64 = wrong_id.keys.remove(&a.id).unwrap();
    wrong_id.keys.insert(b.id.clone(), base64);
    let mut version0 = good.clone();
    version0.version = 0;
    let mut kind = good.clone();
    kind.kind = "index".into();
    for (name, bad) in [
        ("threshold 0", zero),
        ("threshold above keys", above),
        ("unlisted key", unlisted),
        ("key twice", twice),
        ("id not matching key", wrong_id),
        ("version 0", version0),
        ("wrong type", kind),
    ] {
        assert!(bad.validate().is_err(), "{name} was accepted");
    }
    let text = String::from_utf8(bytes(&good))
        .unwrap()
        .replace("\"format\": 1", "\"format\": 1,\n  \"extra\": 1");
    assert!(serde_json::from_str::<Root>(&text).is_err());
}

#[test]
fn threshold_counts_distinct_valid_keys() {
    let (a, b, c, outsider) = (key(), key(), key(), key());
    let r = root(1, [(&[&a], 1), (&[&a, &b, &c], 2), (&[&a], 1)]);
    let role = r.role_keys(Role::Index).unwrap();
    let data = b"index bytes";
    assert_eq!(
        role.verify("index.json", data, &sign_all(&[&a, &b], data))
            .unwrap()
            .len(),
        2
    );
    for (name, sig) in [
        ("one signature", sign_all(&[&a], data)),
        ("one key twice", sign_all(&[&a, &a], data)),
        ("one key and an outsider", sign_all(&[&a, &outsider], data)),
    ] {
        let err = role.verify("index.json", data, &sig).unwrap_err();
        assert!(
            matches!(
                err,
                FormatError::ThresholdNotMet {
                    valid: 1,
                    threshold: 2,
                    ..
                }
            ),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(&a.id), "{name}: {err}");
    }
    // A bad block by a role key does not stop two good ones from counting.
    let mut mixed = sign_all(&[&c], b"other data");
    mixed.extend(sign_all(&[&a, &b], data));
    role.verify("index.json", data, &mixed).unwrap();
    // Garbage between blocks rejects the file.
    let mut garbage = sign_all(&[&a], data);
    garbage.extend(b"hello\n");
    garbage.extend(sign_all(&[&b], data));
    assert!(role.verify("index.json", data, &garbage).is_err());
}

#[test]
fn successor_needs_both_the_old_and_the_new_root_keys() {
    let (old, new) = (key(), key());
    let first = root(1, [(&[&old], 1), (&[&old], 1), (&[&old], 1)]);
    let first_bytes = bytes(&first);
    let trusted =
        VerifiedRoot::verify_self_signed(first_bytes.clone(), sign_all(&[&old], &first_bytes))
            .unwrap();
    assert_eq!(trusted.version(), 1);

    let second = root(2, [(&[&new], 1), (&[&new], 1), (&[&new], 1)]);
    let second_bytes = bytes(&second);
    let only_new = VerifiedRoot::verify_successor(
        &trusted,
        second_bytes.clone(),
        sign_all(&[&new], &second_bytes),
    )
    .unwrap_err();
    assert!(
        only_new.to_string().contains("trusted root 1"),
        "{only_new}"
    );
    let only_old = VerifiedRoot::verify_successor(
        &trusted,
        second_bytes.clone(),
        sign_all(&[&old], &second_bytes),
    )
    .unwrap_err();
    assert!(
        only_old.to_string().contains("its own root keys"),
        "{only_old}"
    );
    let next = VerifiedRoot::verify_successor(
        &trusted,
        second_bytes.clone(),
        sign_all(&[&old, &new], &second_bytes),
    )
    .unwrap();
    assert_eq!(next.version(), 2);
    assert_eq!(
        next.role(Role::Index).key_ids(),
        [new.id.parse().unwrap()].into()
    );

    // Version must be exactly one more: replaying root 1 as "2" fails.
    let replay = VerifiedRoot::verify_successor(
        &trusted,
        first_bytes.clone(),
        sign_all(&[&old], &first_bytes),
    )
    .unwrap_err();
    assert!(replay.to_string().contains("not 2"), "{replay}");
}

#[test]
fn public_keys_stand_for_root_zero() {
    let a = key();
    let mut keys = TrustedKeys::new();
    keys.add_text(&a.base64, "t").unwrap();
    let zero = VerifiedRoot::from_public_keys(keys).unwrap();
    assert_eq!((zero.version(), zero.expires()), (0, None));
    assert!(!zero.is_expired(Timestamp::MAX));
    let first = root(1, [(&[&a], 1), (&[&a], 1), (&[&a], 1)]);
    let b = bytes(&first);
    VerifiedRoot::verify_successor(&zero, b.clone(), sign_all(&[&a], &b)).unwrap();
    assert!(VerifiedRoot::from_public_keys(TrustedKeys::new()).is_err());
}

//! The API's bearer token: read once from `--token-file`, then compared in
//! constant time with what every request carries.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use subtle::ConstantTimeEq;

use crate::error::{CoordinatorError, Result};

/// Shorter tokens are refused: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

pub struct Token(Vec<u8>);

impl Token {
    /// Reads the token file, failing closed: a file every user can read or
    /// write, an empty or short token, or an unreadable file stops the
    /// server from starting rather than serving with a weak secret.
    pub fn load(path: &Path) -> Result<Token> {
        let how = "write one with `(umask 077 && openssl rand -hex 32 > FILE)`";
        let meta = std::fs::metadata(path).map_err(|e| {
            CoordinatorError::io(
                format!("cannot read the token file {} ({how})", path.display()),
                e,
            )
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(CoordinatorError::TokenFileOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            CoordinatorError::io(
                format!(
                    "cannot read the token file {} (it must be UTF-8 text; {how})",
                    path.display()
                ),
                e,
            )
        })?;
        let token = text.trim_end_matches(['\n', '\r']);
        if token.trim().len() < MIN_TOKEN_LEN {
            return Err(CoordinatorError::TokenTooShort {
                path: path.to_path_buf(),
                min: MIN_TOKEN_LEN,
                how,
            });
        }
        Ok(Token(token.as_bytes().to_vec()))
    }

    #[cfg(test)]
    pub fn from_text(text: &str) -> Token {
        Token(text.as_bytes().to_vec())
    }

    /// Whether `given` is the token. The comparison takes the same time
    /// wherever the first wrong byte is, so response times do not reveal
    /// the token byte by byte (only its length, which is not the secret).
    pub fn matches(&self, given: &str) -> bool {
        bool::from(self.0.as_slice().ct_eq(given.as_bytes()))
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `value` with its `%XX` escapes decoded. A `+` stays a `+`: tokens are
/// pasted into URLs as they are, and a base64 token's `+` read as a space
/// would not match (no token has a space in it to be spelled `+`).
pub fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded `token` of a query string.
pub fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "token").then(|| percent_decode(value)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = Token::from_text("s3cret-token-0123456789");
        assert!(token.matches("s3cret-token-0123456789"));
        assert!(!token.matches("s3cret-token-012345678"));
        assert!(!token.matches("s3cret-token-01234567890"));
        assert!(!token.matches(""));
        assert!(!token.matches("S3cret-token-0123456789"));
    }

    #[test]
    fn bearer_headers_and_query_tokens_are_read() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(
            query_token("id=x&token=a%2Bb+c/%3D=").as_deref(),
            Some("a+b+c/==")
        );
        assert_eq!(query_token("id=x"), None);
        assert_eq!(query_token("token=%zz"), None);
    }

    #[test]
    fn weak_or_exposed_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("0123456789abcdef0123\n", 0o600);
        assert!(Token::load(&path).unwrap().matches("0123456789abcdef0123"));
        write("0123456789abcdef0123\n", 0o644);
        let err = Token::load(&path).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        write("\n", 0o600);
        let err = Token::load(&path).err().unwrap().to_string();
        assert!(err.contains("empty or shorter"), "{err}");
        let err = Token::load(&dir.path().join("missing"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot read the token file"), "{err}");
    }
}

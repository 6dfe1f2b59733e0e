//! The server's secrets: the Ed25519 key that signs webhook deliveries and its JWK Set
//! (protocol section 6.5), the HMAC key behind callback and claim tokens (section
//! 12.9), and random wake ids.

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use ring::{digest, hmac};

use crate::wire;

/// A signing key that cannot be used.
#[derive(Debug)]
pub struct BadSigningKey;

impl std::fmt::Display for BadSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not an Ed25519 private key in PKCS#8")
    }
}

impl std::error::Error for BadSigningKey {}

pub(crate) struct Keys {
    signing: Ed25519KeyPair,
    kid: String,
    x: String,
    tokens: hmac::Key,
    rng: SystemRandom,
}

impl Keys {
    /// The keys, signing with `pkcs8` when given (an Ed25519 private key in PKCS#8),
    /// else with a key made for this process.
    pub(crate) fn new(pkcs8: Option<&[u8]>) -> Result<Self, BadSigningKey> {
        let rng = SystemRandom::new();
        let signing = match pkcs8 {
            Some(der) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der),
            None => {
                let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| BadSigningKey)?;
                Ed25519KeyPair::from_pkcs8(doc.as_ref())
            }
        }
        .map_err(|_| BadSigningKey)?;
        let x = base64url(signing.public_key().as_ref());
        // The JWK thumbprint (RFC 7638): SHA-256 of the required members, sorted.
        let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = format!(
            "ds_{}",
            base64url(digest::digest(&digest::SHA256, thumbprint.as_bytes()).as_ref())
        );
        let tokens = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| BadSigningKey)?;
        Ok(Self {
            signing,
            kid,
            x,
            tokens,
            rng,
        })
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK Set.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "use": "sig", "alg": "EdDSA",
            "x": self.x,
        }] })
    }

    /// `Webhook-Signature` for `body` sent at `unix_secs` (protocol section 7.1).
    pub(crate) fn signature(&self, unix_secs: u64, body: &[u8]) -> String {
        let mut message = format!("{unix_secs}.").into_bytes();
        message.extend_from_slice(body);
        let sig = self.signing.sign(&message);
        format!(
            "t={unix_secs},kid={},ed25519={}",
            self.kid,
            base64url(sig.as_ref())
        )
    }

    /// The bearer token of one wake: an HMAC over the subscription instance, its id,
    /// the generation and the wake id, so it is good for that wake only.
    pub(crate) fn token(&self, instance: u64, id: &str, generation: u64, wake_id: &str) -> String {
        let message = format!("{instance}\n{id}\n{generation}\n{wake_id}");
        base64url(hmac::sign(&self.tokens, message.as_bytes()).as_ref())
    }

    /// Whether `given` is the token of that wake (compared in constant time).
    pub(crate) fn check_token(
        &self,
        given: &str,
        instance: u64,
        id: &str,
        generation: u64,
        wake_id: &str,
    ) -> bool {
        let expected = self.token(instance, id, generation, wake_id);
        expected.len() == given.len()
            && expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// A fresh random id with `prefix`.
    pub(crate) fn random_id(&self, prefix: &str) -> String {
        let mut bytes = [0u8; 12];
        // SystemRandom fails only without an OS random source; the counter-free
        // fallback below still differs per call through the time.
        if self.rng.fill(&mut bytes).is_err() {
            bytes[..8].copy_from_slice(&crate::memory::unix_ms().to_le_bytes());
        }
        let mut out = String::from(prefix);
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// A number in `0..1` for jitter.
    pub(crate) fn unit(&self) -> f64 {
        let mut bytes = [0u8; 4];
        let _ = self.rng.fill(&mut bytes);
        f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
    }
}

/// Unpadded base64url (RFC 4648 section 5).
pub(crate) fn base64url(data: &[u8]) -> String {
    wire::base64(data)
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519};

    #[test]
    fn signatures_verify_with_the_published_key() {
        let keys = Keys::new(None).expect("keys");
        let header = keys.signature(1_700_000_000, b"{\"a\":1}");
        let sig = header.rsplit("ed25519=").next().expect("sig");
        assert!(header.starts_with(&format!("t=1700000000,kid={},", keys.kid())));
        let sig = decode(sig);
        let public = UnparsedPublicKey::new(&ED25519, keys.signing.public_key().as_ref());
        assert!(public.verify(b"1700000000.{\"a\":1}", &sig).is_ok());
        assert!(keys.kid().starts_with("ds_"));
    }

    #[test]
    fn tokens_are_bound_to_their_wake() {
        let keys = Keys::new(None).expect("keys");
        let t = keys.token(1, "sub", 7, "w_1");
        assert!(keys.check_token(&t, 1, "sub", 7, "w_1"));
        assert!(!keys.check_token(&t, 1, "sub", 8, "w_1"));
        assert!(!keys.check_token(&t, 1, "sub", 7, "w_2"));
        assert!(!keys.check_token(&t, 2, "sub", 7, "w_1"));
        assert!(!keys.check_token("", 1, "sub", 7, "w_1"));
        assert!(Keys::new(Some(b"not a key")).is_err());
    }

    fn decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            _ => 63,
        };
        let bits: Vec<u8> = text.bytes().map(value).collect();
        let mut out = Vec::new();
        for group in bits.chunks(4) {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, v)| n | u32::from(*v) << (18 - 6 * i));
            for i in 0..group.len().saturating_sub(1) {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }
}

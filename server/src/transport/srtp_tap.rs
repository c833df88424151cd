//! The SRTP master keys of one WHEP viewer's connection, for the direct send path (`fastpath`).
//!
//! The `webrtc` crate (0.21) derives a connection's SRTP contexts inside its DTLS handler and
//! exposes neither the keying material nor the contexts. It does let each connection have its
//! own crypto provider (`SettingEngineBuilder::with_crypto_provider`), and `rtc-srtp` derives
//! every session key through that provider's `block_encrypt` (the AES-CM PRF of RFC 3711
//! §4.3.3): the first derivation of a context encrypts, under the master key, the block
//! `master salt ‖ 0…0`, then the same block with the label XORed into byte 7 (3: SRTCP key,
//! 2: SRTP salt, 5: SRTCP salt; with HMAC-SHA1 also 1 and 4, two blocks each).
//!
//! [`KeyTap`] is the default provider with its `block_encrypt` calls recorded;
//! [`KeyTap::masters`] reads the two derivations back (the local context's first, then the
//! remote's: `rtc`'s `update_srtp_contexts`). Anything that does not have that exact shape is
//! refused, and the connection keeps sending through the `webrtc` crate. Only the profiles
//! the tapped connections offer are recognised: AEAD_AES_128_GCM (4 derivation blocks) and
//! AES128_CM_HMAC_SHA1_80 (8).

use std::sync::Arc;

use parking_lot::Mutex;

use webrtc::peer_connection::SrtpProtectionProfile;
use webrtc::peer_connection::crypto::{
    self, ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher, CryptoAlgorithm, CryptoError, HashAlgorithm,
    HmacAlgorithm, KeyExchangeAlgorithm, Mac, PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};

/// Block encryptions recorded at most (two contexts of 8 derivation blocks, and slack).
const MAX_CALLS: usize = 24;

/// The SRTP profiles a tapped connection offers: the two whose derivations [`KeyTap::masters`]
/// tells apart.
pub const PROFILES: [SrtpProtectionProfile; 2] = [SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm, SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80];

/// A master key and salt, and the profile they are for.
#[derive(Clone)]
pub struct Master {
    pub profile: rtc::srtp::protection_profile::ProtectionProfile,
    pub key: Vec<u8>,
    pub salt: Vec<u8>,
}

impl PartialEq for Master {
    fn eq(&self, other: &Master) -> bool {
        self.profile as u8 == other.profile as u8 && self.key == other.key && self.salt == other.salt
    }
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").field("profile", &self.profile).finish_non_exhaustive()
    }
}

/// The default crypto provider, with the SRTP key derivations recorded.
pub struct KeyTap {
    inner: Arc<dyn RTCCryptoProvider>,
    calls: Mutex<Vec<(Vec<u8>, [u8; 16])>>,
}

impl KeyTap {
    /// A tap over the default provider.
    pub fn new() -> Result<Arc<KeyTap>, CryptoError> {
        Ok(Self::over(crypto::default_provider()?))
    }

    /// A tap over `inner`.
    pub fn over(inner: Arc<dyn RTCCryptoProvider>) -> Arc<KeyTap> {
        Arc::new(KeyTap { inner, calls: Mutex::default() })
    }

    /// The local (what we send) and remote master keys, once both SRTP contexts are derived
    /// (the connection is up); `None` when the recorded derivations are not two contexts of a
    /// known profile.
    pub fn masters(&self) -> Option<(Master, Master)> {
        let calls = self.calls.lock();
        masters(&calls)
    }
}

/// Reads two SRTP contexts' derivations (local first) out of recorded block encryptions.
fn masters(calls: &[(Vec<u8>, [u8; 16])]) -> Option<(Master, Master)> {
    use rtc::srtp::protection_profile::ProtectionProfile;
    let mut found = Vec::new();
    let mut rest = calls;
    while let Some((key, first)) = rest.first() {
        let n = rest.iter().take_while(|(k, _)| k == key).count();
        let group = &rest[..n];
        rest = &rest[n..];
        if key.len() != 16 {
            return None;
        }
        // Each block: the first with a label in byte 7 and a block counter in bytes 14-15.
        let labels: Option<Vec<(u8, u16)>> = group
            .iter()
            .map(|(_, b)| {
                let same = b[..7] == first[..7] && b[8..14] == first[8..14];
                same.then_some((b[7] ^ first[7], u16::from_be_bytes([b[14], b[15]])))
            })
            .collect();
        let labels = labels?;
        let profile = match labels.as_slice() {
            [(0, 0), (3, 0), (2, 0), (5, 0)] => ProtectionProfile::AeadAes128Gcm,
            [(0, 0), (3, 0), (2, 0), (5, 0), (1, 0), (1, 1), (4, 0), (4, 1)] => ProtectionProfile::Aes128CmHmacSha1_80,
            _ => return None,
        };
        if first[14..] != [0, 0] {
            return None;
        }
        let salt_len = profile.salt_len();
        if first[salt_len..14].iter().any(|&b| b != 0) {
            return None;
        }
        found.push(Master { profile, key: key.clone(), salt: first[..salt_len].to_vec() });
    }
    match <[Master; 2]>::try_from(found) {
        Ok([local, remote]) if local.profile as u8 == remote.profile as u8 => Some((local, remote)),
        _ => None,
    }
}

impl RTCCryptoProvider for KeyTap {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for KeyTap {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(&self, algorithm: BlockCipherAlgorithm, key: &[u8], block: &mut [u8]) -> Result<(), CryptoError> {
        if let Ok(b) = <[u8; 16]>::try_from(&*block) {
            let mut calls = self.calls.lock();
            if calls.len() < MAX_CALLS {
                calls.push((key.to_vec(), b));
            }
        }
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }

    fn new_stream_cipher(&self, algorithm: StreamCipherAlgorithm, key: &[u8]) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(&self, algorithm: CbcAlgorithm, key: &[u8]) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(&self, algorithm: KeyExchangeAlgorithm) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(&self, scheme: SignatureScheme) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(&self, scheme: SignatureScheme, pkcs8_der: &[u8]) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(&self, scheme: SignatureScheme, public_key: PublicKey<'_>, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        self.inner.crypto().verify_signature(scheme, public_key, message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::{context::Context, protection_profile::ProtectionProfile};

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96, (seq >> 8) as u8, seq as u8, 0, 0, 0x10, 0, 0, 0, 0, 0];
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(b"a forwarded payload");
        p
    }

    /// Derives two contexts through a tap as the DTLS handler does (local, then remote) and
    /// checks the tap gives back both masters; a context built from the recovered local master
    /// encrypts what the original's peer decrypts.
    fn round_trip(profile: ProtectionProfile) {
        let tap = KeyTap::new().unwrap();
        let (kl, sl) = ((1..=16).collect::<Vec<u8>>(), (101..101 + profile.salt_len() as u8).collect::<Vec<u8>>());
        let (kr, sr) = ((31..47).collect::<Vec<u8>>(), (201..201 + profile.salt_len() as u8).collect::<Vec<u8>>());
        let _local = Context::new(&kl, &sl, profile, None, None, tap.crypto()).unwrap();
        let _remote = Context::new(&kr, &sr, profile, None, None, tap.crypto()).unwrap();
        let (local, remote) = tap.masters().expect("two contexts derived");
        assert_eq!(local, Master { profile, key: kl.clone(), salt: sl.clone() });
        assert_eq!(remote, Master { profile, key: kr, salt: sr });

        let provider = crypto::default_provider().unwrap();
        let mut ours = Context::new(&local.key, &local.salt, profile, None, None, provider.crypto()).unwrap();
        let mut peer = Context::new(&kl, &sl, profile, None, None, provider.crypto()).unwrap();
        for seq in [1u16, 2, 65535, 0] {
            let plain = rtp(0x1234_5678, seq);
            let sealed = ours.encrypt_rtp(&plain).unwrap();
            assert_ne!(&sealed[12..12 + 5], &plain[12..12 + 5], "the payload is encrypted");
            assert_eq!(&peer.decrypt_rtp(&sealed).unwrap()[..], &plain[..]);
        }
    }

    #[test]
    fn aes_gcm_masters_are_recovered() {
        round_trip(ProtectionProfile::AeadAes128Gcm);
    }

    #[test]
    fn aes_cm_hmac_sha1_80_masters_are_recovered() {
        round_trip(ProtectionProfile::Aes128CmHmacSha1_80);
    }

    #[test]
    fn other_shapes_are_refused() {
        let tap = KeyTap::new().unwrap();
        assert!(tap.masters().is_none(), "nothing derived yet");
        let profile = ProtectionProfile::AeadAes128Gcm;
        let _one = Context::new(&[7; 16], &[9; 12], profile, None, None, tap.crypto()).unwrap();
        assert!(tap.masters().is_none(), "one context is not enough");
        // A block encryption that is not a derivation in the middle.
        let mut block = [0u8; 16];
        tap.block_encrypt(BlockCipherAlgorithm::Aes128, &[1; 16], &mut block).unwrap();
        let _two = Context::new(&[8; 16], &[9; 12], profile, None, None, tap.crypto()).unwrap();
        assert!(tap.masters().is_none());
        // AES-256 derivations (32-byte keys) are not recognised.
        let tap = KeyTap::new().unwrap();
        for _ in 0..2 {
            let _c = Context::new(&[7; 32], &[9; 12], ProtectionProfile::AeadAes256Gcm, None, None, tap.crypto()).unwrap();
        }
        assert!(tap.masters().is_none());
    }
}

//! Password hashing with argon2id, the work behind [`PasswordWork`].
//!
//! The hub never hashes: it asks its shell with [`crate::hub::Output::Password`], and the shell
//! runs [`PasswordWork::perform`] away from the hub's task. Hashes are PHC strings that carry
//! their own parameters and salt, so raising the cost later keeps old hashes verifiable.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use password_hash::rand_core::OsRng;

use crate::hub::PasswordWork;

/// The cost of hashing one password with argon2id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Degree of parallelism.
    pub lanes: u32,
}

impl Default for PasswordCost {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            lanes: 1,
        }
    }
}

impl PasswordCost {
    /// The cheapest argon2id allows, for tests only: it protects nothing.
    pub const TEST: Self = Self {
        memory_kib: 8,
        iterations: 1,
        lanes: 1,
    };

    fn hasher(&self) -> Argon2<'static> {
        let params = Params::new(self.memory_kib, self.iterations, self.lanes, None)
            .unwrap_or_else(|_| Params::default());
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

/// Hashes a password with a fresh random salt; the PHC string carries the parameters.
pub fn hash(password: &str, cost: &PasswordCost) -> String {
    let salt = SaltString::generate(&mut OsRng);
    cost.hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .expect("argon2id hashes any password of bounded length")
}

/// True when `password` matches `hash` (a PHC string). A malformed hash matches nothing.
pub fn verify(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

impl PasswordWork {
    /// Does the work: whether the password matched, and the new hash if one was asked for.
    /// This is slow on purpose; run it off any task that serves other people.
    pub fn perform(&self, cost: &PasswordCost) -> (bool, Option<String>) {
        match self {
            PasswordWork::Hash { password } => (true, Some(hash(password.expose(), cost))),
            PasswordWork::Verify { password, hash } => (verify(password.expose(), hash), None),
            PasswordWork::Change {
                password,
                hash: old,
                new,
            } => {
                if verify(password.expose(), old) {
                    (true, Some(hash(new.expose(), cost)))
                } else {
                    (false, None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Secret;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse", &PasswordCost::TEST);
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horse ", &h));
        assert!(!verify("correct horse", "not a hash"));
        // The same password hashes differently each time (a fresh salt).
        assert_ne!(h, hash("correct horse", &PasswordCost::TEST));
    }

    #[test]
    fn change_hashes_the_new_password_only_when_the_old_one_matches() {
        let old = hash("old password", &PasswordCost::TEST);
        let change = |given: &str| PasswordWork::Change {
            password: Secret::new(given),
            hash: old.clone(),
            new: Secret::new("new password"),
        };
        assert_eq!(change("wrong").perform(&PasswordCost::TEST), (false, None));
        let (ok, new) = change("old password").perform(&PasswordCost::TEST);
        assert!(ok && verify("new password", &new.unwrap()));
    }
}

//! Per-route authorisation: `allow_emails`, `allow_email_domains`, `allow_groups` (SPEC "Policy").
//!
//! With no list set, any authenticated user passes; otherwise the user passes when any list
//! matches. Rules, chosen to close the bypasses peers shipped (SECURITY IDT-14):
//! - emails and domains only match when `email_verified` is the JSON boolean `true`: `false`,
//!   missing, or the string `"true"` never match (the SPEC requires `false`; missing is
//!   treated the same way, as SECURITY recommends);
//! - an email must contain exactly one `@` (GHSA-c5c4-8r6x-56w3);
//! - emails compare ASCII case-insensitively as whole addresses; domains compare
//!   case-insensitively as the whole part after `@` (no suffix or substring match:
//!   `evil-example.com` and `example.com.evil.com` are other domains);
//! - groups compare exactly and case-sensitively (`Admins` is not `admins`).

use crate::config::RouteConfig;
use crate::identity::Identity;

/// Which list let the user in (for logs and `explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// The route has no allow list.
    NoPolicy,
    Email,
    EmailDomain,
    Group,
}

/// The outcome of the policy for one user on one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow(Allowed),
    Deny,
}

/// Evaluates the route's allow lists for this identity.
pub fn evaluate(route: &RouteConfig, id: &Identity) -> Decision {
    if route.allow_emails.is_empty()
        && route.allow_email_domains.is_empty()
        && route.allow_groups.is_empty()
    {
        return Decision::Allow(Allowed::NoPolicy);
    }
    if let Some(email) = verified_email(id) {
        if route
            .allow_emails
            .iter()
            .any(|e| e.eq_ignore_ascii_case(email))
        {
            return Decision::Allow(Allowed::Email);
        }
        if let Some((_, domain)) = email.split_once('@')
            && route
                .allow_email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
        {
            return Decision::Allow(Allowed::EmailDomain);
        }
    }
    if id
        .groups
        .iter()
        .any(|g| route.allow_groups.iter().any(|a| a == g))
    {
        return Decision::Allow(Allowed::Group);
    }
    Decision::Deny
}

/// The email, only when verified and well-formed (exactly one `@`, both sides non-empty).
fn verified_email(id: &Identity) -> Option<&str> {
    let email = id.email.as_deref()?;
    if id.email_verified != Some(true) {
        return None;
    }
    let mut parts = email.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty() => Some(email),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, Upstream};

    fn route(emails: &[&str], domains: &[&str], groups: &[&str]) -> RouteConfig {
        RouteConfig {
            index: 0,
            host: None,
            path: "/".into(),
            upstream: Upstream {
                https: false,
                host: "127.0.0.1".into(),
                port: 80,
                base_path: String::new(),
                authority: "127.0.0.1".into(),
            },
            auth: AuthMode::Required,
            allow_emails: emails.iter().map(|s| s.to_string()).collect(),
            allow_email_domains: domains.iter().map(|s| s.to_string()).collect(),
            allow_groups: groups.iter().map(|s| s.to_string()).collect(),
            preserve_host: false,
            allow_preflight: false,
        }
    }

    fn user(email: Option<&str>, verified: Option<bool>, groups: &[&str]) -> Identity {
        Identity {
            sub: "u".into(),
            email: email.map(Into::into),
            email_verified: verified,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn no_lists_allow_everyone() {
        assert_eq!(
            evaluate(&route(&[], &[], &[]), &user(None, None, &[])),
            Decision::Allow(Allowed::NoPolicy)
        );
    }

    #[test]
    fn domain_rules() {
        let r = route(&[], &["example.com"], &[]);
        let cases = [
            (Some("alice@example.com"), Some(true), true),
            (Some("alice@EXAMPLE.COM"), Some(true), true),
            (Some("attacker@evil.com@example.com"), Some(true), false),
            (Some("alice@example.com.evil.com"), Some(true), false),
            (Some("alice@evil-example.com"), Some(true), false),
            (Some("alice@sub.example.com"), Some(true), false),
            (Some("@example.com"), Some(true), false),
            (Some("alice@example.com"), Some(false), false),
            (Some("alice@example.com"), None, false),
            (None, Some(true), false),
        ];
        for (email, verified, want) in cases {
            let got = evaluate(&r, &user(email, verified, &[]));
            assert_eq!(
                matches!(got, Decision::Allow(_)),
                want,
                "{email:?} {verified:?}"
            );
        }
    }

    #[test]
    fn email_and_group_rules() {
        let r = route(&["alice@example.com"], &[], &["admins"]);
        assert_eq!(
            evaluate(&r, &user(Some("Alice@Example.com"), Some(true), &[])),
            Decision::Allow(Allowed::Email)
        );
        assert_eq!(
            evaluate(&r, &user(Some("alice@example.com"), Some(false), &[])),
            Decision::Deny
        );
        assert_eq!(
            evaluate(&r, &user(None, None, &["admins"])),
            Decision::Allow(Allowed::Group)
        );
        for g in ["Admins", "admins-readonly", "admin", " admins"] {
            assert_eq!(evaluate(&r, &user(None, None, &[g])), Decision::Deny, "{g}");
        }
    }
}

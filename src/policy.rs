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

/// Which list let the user in (for logs and `portcullis explain`).
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
    if no_lists(route) {
        return Decision::Allow(Allowed::NoPolicy);
    }
    if let Ok(email) = email_status(id) {
        if listed_email(route, email).is_some() {
            return Decision::Allow(Allowed::Email);
        }
        if listed_domain(route, email).is_some() {
            return Decision::Allow(Allowed::EmailDomain);
        }
    }
    if matching_group(route, id).is_some() {
        return Decision::Allow(Allowed::Group);
    }
    Decision::Deny
}

fn no_lists(route: &RouteConfig) -> bool {
    route.allow_emails.is_empty()
        && route.allow_email_domains.is_empty()
        && route.allow_groups.is_empty()
}

/// Why an email cannot match the email lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmailProblem {
    Missing,
    NotVerified,
    NotSingleAt,
    EmptyPart,
}

/// The email, only when verified and well-formed (exactly one `@`, both sides non-empty).
fn email_status(id: &Identity) -> Result<&str, EmailProblem> {
    let email = id.email.as_deref().ok_or(EmailProblem::Missing)?;
    if id.email_verified != Some(true) {
        return Err(EmailProblem::NotVerified);
    }
    let mut parts = email.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty() => Ok(email),
        (Some(_), Some(_), None) => Err(EmailProblem::EmptyPart),
        _ => Err(EmailProblem::NotSingleAt),
    }
}

/// The `allow_emails` entry equal (ASCII case-insensitively) to `email`.
fn listed_email<'r>(route: &'r RouteConfig, email: &str) -> Option<&'r str> {
    route
        .allow_emails
        .iter()
        .find(|e| e.eq_ignore_ascii_case(email))
        .map(String::as_str)
}

/// The `allow_email_domains` entry equal (ASCII case-insensitively) to the whole domain.
fn listed_domain<'r>(route: &'r RouteConfig, email: &str) -> Option<&'r str> {
    let (_, domain) = email.split_once('@')?;
    route
        .allow_email_domains
        .iter()
        .find(|d| d.eq_ignore_ascii_case(domain))
        .map(String::as_str)
}

/// The first of the user's groups that `allow_groups` lists (exact comparison).
fn matching_group<'i>(route: &RouteConfig, id: &'i Identity) -> Option<&'i str> {
    id.groups
        .iter()
        .find(|g| route.allow_groups.iter().any(|a| a == g))
}

/// The policy's decision with the reason for each list, for `portcullis explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Exactly what [`evaluate`] decides.
    pub decision: Decision,
    /// One line per rule looked at, in evaluation order: the list that matched (and with
    /// what), or why each set list did not.
    pub lines: Vec<String>,
}

/// Explains [`evaluate`] for this identity; `groups_claim` only names the claim in messages.
pub fn explain(route: &RouteConfig, id: &Identity, groups_claim: &str) -> Explanation {
    let decision = evaluate(route, id);
    let mut lines = Vec::new();
    if no_lists(route) {
        lines.push("no allow_* list on this route: any authenticated user passes".to_owned());
        return Explanation { decision, lines };
    }
    let email = email_status(id);
    let email_problem = |e: EmailProblem| match e {
        EmailProblem::Missing => "there is no email claim (a string)".to_owned(),
        EmailProblem::NotVerified => format!(
            "email_verified is not true ({})",
            match id.claims.get("email_verified") {
                None => "it is missing".to_owned(),
                Some(serde_json::Value::Bool(b)) => format!("it is {b}"),
                Some(other) => format!("it is {other}, not the boolean true"),
            }
        ),
        EmailProblem::NotSingleAt => "email has no single @".to_owned(),
        EmailProblem::EmptyPart => "email has an empty local part or domain".to_owned(),
    };
    for (name, list, find) in [
        (
            "allow_emails",
            &route.allow_emails,
            listed_email as for<'r> fn(&'r RouteConfig, &str) -> Option<&'r str>,
        ),
        (
            "allow_email_domains",
            &route.allow_email_domains,
            listed_domain,
        ),
    ] {
        if list.is_empty() {
            continue;
        }
        let line = match email {
            Err(e) => format!("{name}: cannot match: {}", email_problem(e)),
            Ok(addr) => match find(route, addr) {
                Some(hit) => format!("{name} matched {hit:?} (email {addr})"),
                None if name == "allow_emails" => {
                    format!(
                        "{name}: email {addr} is not in {name} [{}]",
                        list.join(", ")
                    )
                }
                None => format!(
                    "{name}: domain {} is not in {name} [{}]",
                    addr.split_once('@').map_or("", |(_, d)| d),
                    list.join(", ")
                ),
            },
        };
        lines.push(line);
    }
    if !route.allow_groups.is_empty() {
        let line = match matching_group(route, id) {
            Some(g) => format!("allow_groups matched {g:?} (claim `{groups_claim}`)"),
            None if id.claims.get(groups_claim).is_none() => format!(
                "allow_groups: there is no `{groups_claim}` claim, so groups [] ∩ allow_groups [{}] is empty",
                route.allow_groups.join(", ")
            ),
            None => format!(
                "allow_groups: groups [{}] ∩ allow_groups [{}] is empty (exact, case-sensitive)",
                id.groups.join(", "),
                route.allow_groups.join(", ")
            ),
        };
        lines.push(line);
    }
    Explanation { decision, lines }
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

    fn user_with_claims(claims: serde_json::Value, groups_claim: &str) -> Identity {
        let map = claims.as_object().unwrap().clone();
        crate::oidc::identity_from_claims(map, groups_claim)
    }

    #[test]
    fn explanations_name_the_list_or_the_reason() {
        use serde_json::json;
        let r = route(&["alice@example.com"], &["example.com"], &["admins"]);
        let cases: Vec<(serde_json::Value, bool, &[&str])> = vec![
            (
                json!({"sub": "u", "email": "alice@example.com", "email_verified": true}),
                true,
                &["allow_emails matched \"alice@example.com\""],
            ),
            (
                json!({"sub": "u", "email": "carol@example.com", "email_verified": true}),
                true,
                &[
                    "allow_emails: email carol@example.com is not in allow_emails [alice@example.com]",
                    "allow_email_domains matched \"example.com\"",
                ],
            ),
            (
                json!({"sub": "u", "email": "alice@example.com", "email_verified": "true", "groups": ["eng"]}),
                false,
                &[
                    "allow_emails: cannot match: email_verified is not true (it is \"true\", not the boolean true)",
                    "allow_email_domains: cannot match: email_verified is not true",
                    "allow_groups: groups [eng] ∩ allow_groups [admins] is empty",
                ],
            ),
            (
                json!({"sub": "u", "email": "alice@example.com", "email_verified": false}),
                false,
                &[
                    "email_verified is not true (it is false)",
                    "there is no `groups` claim",
                ],
            ),
            (
                json!({"sub": "u", "email": "alice@example.com"}),
                false,
                &["email_verified is not true (it is missing)"],
            ),
            (
                json!({"sub": "u", "email": "a@evil.com@example.com", "email_verified": true}),
                false,
                &["allow_emails: cannot match: email has no single @"],
            ),
            (
                json!({"sub": "u", "email": "x@evil-example.com", "email_verified": true}),
                false,
                &[
                    "allow_email_domains: domain evil-example.com is not in allow_email_domains [example.com]",
                ],
            ),
            (
                json!({"sub": "u", "groups": ["eng", "admins"]}),
                true,
                &[
                    "allow_emails: cannot match: there is no email claim",
                    "allow_groups matched \"admins\"",
                ],
            ),
            (
                json!({"sub": "u", "groups": "admins"}),
                true,
                &["allow_groups matched \"admins\""],
            ),
        ];
        for (claims, allowed, wants) in cases {
            let id = user_with_claims(claims.clone(), "groups");
            let e = explain(&r, &id, "groups");
            assert_eq!(e.decision, evaluate(&r, &id), "{claims}");
            assert_eq!(
                matches!(e.decision, Decision::Allow(_)),
                allowed,
                "{claims}"
            );
            let text = e.lines.join("\n");
            for want in wants {
                assert!(text.contains(want), "{claims}: {want:?} not in\n{text}");
            }
        }
        let open = explain(&route(&[], &[], &[]), &user(None, None, &[]), "groups");
        assert_eq!(open.decision, Decision::Allow(Allowed::NoPolicy));
        assert!(open.lines[0].contains("any authenticated user"));
        let roles = user_with_claims(json!({"sub": "u", "roles": ["admins"]}), "roles");
        let e = explain(&route(&[], &[], &["admins"]), &roles, "roles");
        assert_eq!(e.lines, ["allow_groups matched \"admins\" (claim `roles`)"]);
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

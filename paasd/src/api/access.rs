//! Who may call what. Everyone on the socket (root, group `paas`) may call everything, except
//! the git user: sshd runs the forced command as that user, so if anything ever let a pusher
//! out of it, the socket must not hand them the whole platform. That user may only ask for a
//! repo, deploy, and read an app. Must not look at anything but the peer and the route.

use hyper::{Method, StatusCode};

use super::error::ApiError;

/// Refuses the git user (`git_uid`, never root) anything but pushing.
pub fn check(
    git_uid: Option<u32>,
    peer_uid: Option<u32>,
    method: &Method,
    segs: &[&str],
) -> Result<(), ApiError> {
    let is_git_user = git_uid.is_some() && git_uid == peer_uid;
    if !is_git_user {
        return Ok(());
    }
    let allowed = matches!(
        (method, segs),
        (&Method::POST, ["git", _])
            | (&Method::POST, ["apps", _, "deploy"])
            | (&Method::GET, ["apps", _])
            | (&Method::GET, ["health"])
    );
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the git user may only push (git push); run paas as root or as another member of group paas",
        ))
    }
}

/// Whether the peer may name who it acts for (`X-Paas-User`): root and the git shell may;
/// anyone else is who their uid says.
pub fn may_name_user(git_uid: Option<u32>, peer_uid: Option<u32>) -> bool {
    peer_uid == Some(0) || (git_uid.is_some() && git_uid == peer_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_git_user_may_only_push() {
        let git = Some(998);
        for (m, p) in [
            (Method::POST, &["git", "a"][..]),
            (Method::POST, &["apps", "a", "deploy"]),
            (Method::GET, &["apps", "a"]),
        ] {
            assert!(check(git, git, &m, p).is_ok(), "{m} {p:?}");
        }
        for (m, p) in [
            (Method::GET, &["apps"][..]),
            (Method::GET, &["apps", "a", "env"]),
            (Method::POST, &["keys"]),
            (Method::DELETE, &["apps", "a"]),
            (Method::POST, &["apps", "a", "run"]),
        ] {
            let e = check(git, git, &m, p).expect_err("refused");
            assert_eq!(e.status, StatusCode::FORBIDDEN);
        }
        // Everyone else, and a daemon whose git user is root (tests), is not limited.
        assert!(check(git, Some(0), &Method::POST, &["keys"]).is_ok());
        assert!(check(git, Some(1000), &Method::GET, &["apps"]).is_ok());
        assert!(check(None, Some(0), &Method::GET, &["apps"]).is_ok());
        assert!(may_name_user(git, git) && may_name_user(git, Some(0)));
        assert!(!may_name_user(git, Some(1000)) && !may_name_user(None, None));
    }
}

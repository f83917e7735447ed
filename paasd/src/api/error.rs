//! `ApiError`: the one error type handlers return, and its mapping to a status code and the
//! `{"error":{"code","message"}}` body. Internal failures are logged here and shown to the
//! client only as a pointer to the log, never with internals.

use hyper::StatusCode;

use crate::apps::AppError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Methods the path accepts, for 405 answers.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(context: &str, err: &dyn std::error::Error) -> ApiError {
        tracing::error!(error = %err, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "paasd hit an internal error; details are in its log (journalctl -u paasd)",
        )
    }

    pub fn body(&self) -> paas_api::ErrorBody {
        paas_api::ErrorBody {
            error: paas_api::ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        use StatusCode as S;
        let (status, code) = match &e {
            AppError::NotFound(_) => (S::NOT_FOUND, "app_not_found"),
            AppError::AlreadyExists(_) => (S::CONFLICT, "app_exists"),
            AppError::InvalidName(_) => (S::BAD_REQUEST, "invalid_name"),
            AppError::InvalidEnv(_) => (S::BAD_REQUEST, "invalid_config_var"),
            AppError::InvalidDomain(_) => (S::BAD_REQUEST, "invalid_domain"),
            AppError::DomainTaken { .. } => (S::CONFLICT, "domain_taken"),
            AppError::DomainNotFound { .. } => (S::NOT_FOUND, "domain_not_found"),
            AppError::InvalidFormation(_) => (S::BAD_REQUEST, "invalid_formation"),
            AppError::InvalidRequest(_) => (S::BAD_REQUEST, "invalid_request"),
            AppError::InvalidResources(_) => (S::BAD_REQUEST, "invalid_resources"),
            AppError::ReleaseNotFound { .. } => (S::NOT_FOUND, "release_not_found"),
            AppError::NoUidLeft { .. } => (S::SERVICE_UNAVAILABLE, "no_uid_left"),
            AppError::NoUid(_) => (S::SERVICE_UNAVAILABLE, "no_uid"),
            AppError::Store(_) | AppError::Secret(_) => {
                return ApiError::internal("request failed", &e);
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::platform_backup::BackupError> for ApiError {
    fn from(e: crate::platform_backup::BackupError) -> ApiError {
        use crate::platform_backup::BackupError as B;
        use StatusCode as S;
        let (status, code) = match &e {
            B::NotFresh(_) => (S::CONFLICT, "not_fresh"),
            B::Refused(_) => (S::UNPROCESSABLE_ENTITY, "invalid_backup"),
            B::TooBig { .. } => (S::PAYLOAD_TOO_LARGE, "backup_too_large"),
            B::Failed(_) => (S::INTERNAL_SERVER_ERROR, "backup_failed"),
            B::Io { .. } => return ApiError::internal("platform backup", &e),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::volumes::VolumeError> for ApiError {
    fn from(e: crate::volumes::VolumeError) -> ApiError {
        use crate::volumes::VolumeError as V;
        use StatusCode as S;
        let (status, code) = match e {
            V::App(a) => return a.into(),
            V::Invalid(_) => (S::BAD_REQUEST, "invalid_volume"),
            V::Exists { .. } | V::PathTaken { .. } => (S::CONFLICT, "volume_exists"),
            V::NotFound { .. } => (S::NOT_FOUND, "volume_not_found"),
            V::BackupNotFound { .. } => (S::NOT_FOUND, "backup_not_found"),
            V::Refused(_) => (S::UNPROCESSABLE_ENTITY, "restore_refused"),
            V::NoMkfs => (S::SERVICE_UNAVAILABLE, "mkfs_missing"),
            V::HasVolumes { .. } => (S::CONFLICT, "app_has_volumes"),
            V::Disk(_) | V::Store(_) | V::Io { .. } => return ApiError::internal("volumes", &e),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::addons::AddonError> for ApiError {
    fn from(e: crate::addons::AddonError) -> ApiError {
        use crate::addons::AddonError as E;
        match e {
            E::App(a) => a.into(),
            E::Supervisor(s) => s.into(),
            e => match addon_status(&e) {
                Some((status, code)) => ApiError::new(status, code, e.to_string()),
                None => ApiError::internal("add-on", &e),
            },
        }
    }
}

/// The status and code of an add-on error a person can act on; `None`: an internal one.
fn addon_status(e: &crate::addons::AddonError) -> Option<(StatusCode, &'static str)> {
    use crate::addons::tools::ToolError;
    use crate::addons::AddonError as E;
    use StatusCode as S;
    Some(match e {
        E::NotFound(_) => (S::NOT_FOUND, "addon_not_found"),
        E::AlreadyExists(_) => (S::CONFLICT, "addon_exists"),
        E::UnknownKind(_) => (S::UNPROCESSABLE_ENTITY, "unknown_addon_type"),
        E::Invalid(_) => (S::BAD_REQUEST, "invalid_request"),
        E::NotInstalled { .. } | E::NoSuchVersion { .. } => {
            (S::UNPROCESSABLE_ENTITY, "addon_unavailable")
        }
        E::AlreadyLinked { .. } => (S::CONFLICT, "already_linked"),
        E::NotLinked { .. } => (S::NOT_FOUND, "not_linked"),
        E::EnvTaken { .. } => (S::CONFLICT, "config_var_taken"),
        E::BackupNotFound { .. } => (S::NOT_FOUND, "backup_not_found"),
        E::RestoreRefused(_) => (S::UNPROCESSABLE_ENTITY, "restore_refused"),
        E::NotUp(_) => (S::SERVICE_UNAVAILABLE, "addon_not_up"),
        E::Tool(ToolError::Missing { .. }) => (S::SERVICE_UNAVAILABLE, "tool_missing"),
        E::Tool(ToolError::Timeout { .. }) => (S::GATEWAY_TIMEOUT, "addon_timeout"),
        E::Failed(_) => (S::INTERNAL_SERVER_ERROR, "addon_failed"),
        E::App(_)
        | E::Supervisor(_)
        | E::Store(_)
        | E::Secret(_)
        | E::Address(_)
        | E::Tool(_)
        | E::Io { .. } => return None,
    })
}

impl From<crate::certs::CertError> for ApiError {
    fn from(e: crate::certs::CertError) -> ApiError {
        use crate::certs::CertError as E;
        use StatusCode as S;
        let (status, code) = match &e {
            E::AppNotFound(_) => (S::NOT_FOUND, "app_not_found"),
            E::NotFound { .. } => (S::NOT_FOUND, "cert_not_found"),
            E::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "invalid_certificate"),
            E::Store(_) | E::Secret(_) => return ApiError::internal("certificates", &e),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::cron::CronError> for ApiError {
    fn from(e: crate::cron::CronError) -> ApiError {
        match e {
            crate::cron::CronError::App(a) => a.into(),
        }
    }
}

impl From<crate::oneoff::RunError> for ApiError {
    fn from(e: crate::oneoff::RunError) -> ApiError {
        use crate::oneoff::RunError;
        match e {
            RunError::App(a) => a.into(),
            RunError::EmptyCommand => ApiError::bad_request("invalid_command", e.to_string()),
            RunError::InvalidLimits(_) => ApiError::bad_request("invalid_limits", e.to_string()),
            RunError::Start(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "run_failed",
                e.to_string(),
            ),
            RunError::Runtime(r) => ApiError::internal("starting a one-off container failed", &r),
            RunError::Address(r) => ApiError::internal("allocating an instance address failed", &r),
        }
    }
}

impl From<crate::build::DeployError> for ApiError {
    fn from(e: crate::build::DeployError) -> ApiError {
        use crate::build::DeployError as D;
        use crate::tarball::ExtractError as X;
        let e = match e {
            D::App(a) => return a.into(),
            other => other,
        };
        let (status, code) = match &e {
            D::App(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            D::Busy { .. } => (StatusCode::CONFLICT, "deploy_in_progress"),
            D::DiskLow { .. } => (StatusCode::INSUFFICIENT_STORAGE, "disk_low"),
            D::UploadTooBig { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large"),
            D::Source(X::TooBig { .. } | X::TooManyEntries { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "source_too_large")
            }
            D::Source(X::Refused { .. }) => (StatusCode::BAD_REQUEST, "source_refused"),
            D::Source(X::Format(_)) => (StatusCode::BAD_REQUEST, "source_unreadable"),
            D::Source(X::Io { .. }) | D::Store(_) | D::Io { .. } | D::Disk(_) => {
                return ApiError::internal("receiving a deploy failed", &e);
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::stacks::StackError> for ApiError {
    fn from(e: crate::stacks::StackError) -> ApiError {
        use crate::stacks::StackError as S;
        use crate::tarball::ExtractError as X;
        let (status, code) = match &e {
            S::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
            S::Exists(_) => (StatusCode::CONFLICT, "stack_exists"),
            S::TooBig { .. } | S::Source(X::TooBig { .. } | X::TooManyEntries { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "stack_too_large")
            }
            S::Source(X::Refused { .. } | X::Format(_)) => {
                (StatusCode::BAD_REQUEST, "stack_refused")
            }
            S::NotRootfs(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_a_rootfs"),
            S::Source(X::Io { .. }) | S::Internal(_) => {
                return ApiError::internal("importing a stack failed", &e);
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::supervisor::SupervisorError> for ApiError {
    fn from(e: crate::supervisor::SupervisorError) -> ApiError {
        use crate::supervisor::SupervisorError as S;
        let e = match e {
            S::App(a) => return a.into(),
            other => other,
        };
        let (status, code) = match &e {
            S::App(_) | S::Address(_) => {
                return ApiError::internal("supervising instances failed", &e)
            }
            S::NotDeployed(_) => (StatusCode::CONFLICT, "not_deployed"),
            S::RolloutFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "rollout_failed"),
            S::InvalidCheck(_) => (StatusCode::BAD_REQUEST, "invalid_check"),
            S::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::git::GitError> for ApiError {
    fn from(e: crate::git::GitError) -> ApiError {
        use crate::git::GitError as G;
        let e = match e {
            G::App(a) => return a.into(),
            other => other,
        };
        let (status, code) = match &e {
            G::App(_) | G::Store(_) | G::Io { .. } | G::Config(_) => {
                return ApiError::internal("git service failed", &e)
            }
            G::InvalidKey(_) => (StatusCode::BAD_REQUEST, "invalid_key"),
            G::KeyExists(_) | G::DuplicateKey(_) => (StatusCode::CONFLICT, "key_exists"),
            G::KeyNotFound(_) => (StatusCode::NOT_FOUND, "key_not_found"),
            G::NoApp(_) => (StatusCode::NOT_FOUND, "app_not_found"),
            G::NoUser(_) => (StatusCode::CONFLICT, "no_git_user"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

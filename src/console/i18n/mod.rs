//! English and Simplified Chinese. Every string a page shows is a [`Msg`]; each language is
//! one table (`en.rs`, `zh.rs`), an exhaustive `match`, so a message without a translation
//! does not compile.

mod en;
mod zh;

use http::HeaderMap;

/// A display language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// `en` or `zh`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// `en`, `zh`, `zh-CN`.
    pub fn parse(text: &str) -> Option<Lang> {
        match text.to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "zh" | "zh-cn" | "zh-hans" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The `kg_lang` cookie, else the browser's first choice between the two, else English.
    pub fn from_request(headers: &HeaderMap) -> Lang {
        if let Some(lang) = super::session::cookie(headers, "kg_lang").and_then(Lang::parse) {
            return lang;
        }
        let accept = headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for choice in accept.split(',') {
            let tag = choice
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("zh") {
                return Lang::Zh;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::En
    }

    /// The text of `message` in this language.
    pub fn text(self, message: Msg) -> &'static str {
        match self {
            Lang::En => en::text(message),
            Lang::Zh => zh::text(message),
        }
    }
}

/// Every message of the console.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    ActionStartsWith,
    AllAgents,
    FetchFailed,
    Filter,
    KiroUsage,
    Limit,
    NameContains,
    NearLimits,
    NoneNearLimits,
    NotFetched,
    Plan,
    RefreshUsage,
    ResetDate,
    Resets,
    SignInAdd,
    SignInHelp,
    SignInMethod,
    SignInBuilderId,
    SignInIdentityCenter,
    SignInPaste,
    SignInStartUrl,
    SignInOptional,
    SignInStart,
    SignInFlow,
    SignInPending,
    SignInEnterCode,
    SignInOpenPage,
    SignInExpires,
    SignInChooseProfile,
    SignInUseProfile,
    SignInPasteHelp,
    SignInPastedAddress,
    SignInSend,
    SignInFinishing,
    SignInSucceeded,
    SignInExpired,
    SignInDenied,
    SignInFailed,
    SignInCancelled,
    SignInAgain,
    SignInCancel,
    Account,
    AccountLoad24h,
    Accounts,
    Action,
    Actions,
    Active,
    Actor,
    AddAccount,
    AddAccountHelp,
    AddToLimit,
    Agent,
    AgentKeyHint,
    Agents,
    Alias,
    Aliases,
    AllAccountsHealthy,
    AllowedModels,
    Amount,
    Audit,
    BackHome,
    BadKey,
    Balance,
    BalanceAfter,
    BaseUrl,
    BlankIsUnlimited,
    BreakerHalfOpen,
    BreakerOpen,
    Bytes,
    CacheRead,
    CacheWrite,
    Change,
    Charged,
    Charged24h,
    ChargedChart,
    Combos,
    ConfirmDelete,
    ContextWindow,
    Copy,
    CreateAgent,
    CreateKey,
    CreateUser,
    Created,
    CredentialsJson,
    Credits,
    CsrfText,
    DangerZone,
    Day,
    Debug,
    DebugHelp,
    Delete,
    DeleteUser,
    Detail,
    Disable,
    Disabled,
    Done,
    DownloadCsv,
    Enable,
    Error,
    Errors,
    Errors24h,
    Expired,
    ExpiresInDays,
    Failures,
    Forbidden,
    ForbiddenText,
    From,
    GatewayKey,
    GroupBy,
    Healthy,
    HealthyAccounts,
    Hour,
    InFlightLeases,
    Input,
    InputTokens,
    Key,
    KeyCreated,
    KeyShownOnce,
    Keys,
    Kind,
    KiroCredits,
    KiroCredits24h,
    LastChange,
    LastUsed,
    LoginIntro,
    Members,
    Model,
    Models,
    Name,
    NeedAttention,
    Next,
    NoAccounts,
    NoAgent,
    NoAgents,
    NoCaptures,
    NoKeys,
    NoPrices,
    NoTransfers,
    NoUsage,
    NoUsers,
    None,
    NotFound,
    NotFoundText,
    NothingSelected,
    Object,
    Output,
    OutputTokens,
    Overview,
    Owner,
    Previous,
    Prices,
    PricesHelp,
    ProfileArn,
    QuickStart,
    QuickStartIntro,
    Quota,
    QuotaCredits,
    QuotaLeft,
    QuotaUsed,
    QuotaUsedLimit,
    Reason,
    Refresh,
    RefreshToken,
    CursorSessionToken,
    Region,
    Request,
    Requests,
    Requests24h,
    RequestsChart,
    RequestsPerHour,
    Resting,
    Revoke,
    RevokeOwnKeyWarning,
    Revoked,
    RoleAdmin,
    RoleAgent,
    RoleUser,
    RpmLimit,
    Save,
    Saved,
    SetLimit,
    Settings,
    Show,
    SignIn,
    SignOut,
    SortBy,
    State,
    Status,
    To,
    TooManyLogins,
    TopUp,
    Transfer,
    TransferCredit,
    TransferHelp,
    Transfers,
    UnknownAction,
    Unlimited,
    Usage,
    Usage30d,
    Used,
    User,
    UserKeysHint,
    Users,
    When,
    WithSelected,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_the_cookie_then_the_browser() {
        let mut headers = HeaderMap::new();
        assert_eq!(Lang::from_request(&headers), Lang::En);
        headers.insert(
            http::header::ACCEPT_LANGUAGE,
            "zh-CN,zh;q=0.9,en;q=0.8".parse().unwrap(),
        );
        assert_eq!(Lang::from_request(&headers), Lang::Zh);
        headers.insert(http::header::COOKIE, "kg_lang=en".parse().unwrap());
        assert_eq!(Lang::from_request(&headers), Lang::En);
        assert_eq!(Lang::Zh.text(Msg::SignIn), "登录");
        assert_eq!(Lang::En.text(Msg::SignIn), "Sign in");
    }
}

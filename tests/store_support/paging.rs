//! Paged listings: the database filters, orders, counts and slices users, keys, audit entries
//! and transfers exactly as the whole lists say.

use kiro_layers::store::*;

use crate::store_support::*;

fn ids<T>(items: &[T], id: impl Fn(&T) -> i64) -> Vec<i64> {
    items.iter().map(id).collect()
}

pub async fn listings_are_paged_in_the_database(b: &Backend) {
    let s = &b.store;
    let a1 = s.create_agent("paging-a1").await.unwrap();
    let a2 = s.create_agent("paging-a2").await.unwrap();
    s.add_quota(QuotaSubject::Agent(a1.id), 1_000_000)
        .await
        .unwrap();
    let names = [
        "alice", "Bob", "carol", "ALINA", "dave", "Lisa", "mallory", "bo", "zed", "alfred", "x",
        "Ali",
    ];
    let mut users = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let agent = [Some(a1.id), Some(a2.id), None][i % 3];
        let user = s
            .create_user(NewUser {
                agent_id: agent,
                name: (*name).to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
        users.push(user);
    }
    // Quota used differs per user (charged through keys).
    for (i, u) in users.iter().enumerate() {
        let (key, _) = new_key(&b.secret, KeyKind::Inference, Some(u.id), None);
        let key = s.create_api_key(key).await.unwrap();
        if i != 4 {
            s.insert_usage(&[usage(&format!("p{i}"), 1, Some(&key), (i as i64 % 4) * 100)])
                .await
                .unwrap();
        }
    }
    // One deleted user never shows.
    s.delete_user(users[4].id).await.unwrap();
    let whole = s.list_users(None).await.unwrap();

    // Users: page by page in id order, the pages add up to the whole list.
    let mut seen = Vec::new();
    for n in 1..=4 {
        let p = s
            .page_users(UserQuery::default(), PageRequest::nth(n, 4))
            .await
            .unwrap();
        assert_eq!(p.total, 11);
        seen.extend(p.items);
    }
    assert_eq!(ids(&seen, |u| u.id), ids(&whole, |u| u.id));
    // Filtered by agent and searched by name (ASCII letters either case), sorted by name.
    let q = UserQuery {
        agent_id: None,
        search: Some("li".into()),
        sort: UserSort::Name,
    };
    let p = s
        .page_users(q.clone(), PageRequest::nth(1, 50))
        .await
        .unwrap();
    let got: Vec<_> = p.items.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(got, ["ALINA", "Ali", "Lisa", "alice"]);
    assert_eq!(p.total, 4);
    let p = s
        .page_users(
            UserQuery {
                agent_id: Some(a1.id),
                ..q.clone()
            },
            PageRequest::nth(1, 50),
        )
        .await
        .unwrap();
    let mut want: Vec<_> = whole.clone();
    want.retain(|u| u.agent_id == Some(a1.id) && u.name.to_ascii_lowercase().contains("li"));
    want.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(ids(&p.items, |u| u.id), ids(&want, |u| u.id));
    // Most quota used first, ties by id; the second page of three.
    let p = s
        .page_users(
            UserQuery {
                sort: UserSort::QuotaUsed,
                ..UserQuery::default()
            },
            PageRequest::nth(2, 3),
        )
        .await
        .unwrap();
    let mut want = whole.clone();
    want.sort_by(|a, b| b.quota_used.cmp(&a.quota_used).then(a.id.cmp(&b.id)));
    assert_eq!(ids(&p.items, |u| u.id), ids(&want[3..6], |u| u.id));
    // Past the end: no rows, the total still told.
    let p = s
        .page_users(UserQuery::default(), PageRequest::nth(9, 50))
        .await
        .unwrap();
    assert!(p.items.is_empty());
    assert_eq!(p.total, 11);
    // Text that means something to LIKE is taken literally.
    for odd in ["%", "_", "\\", "' OR 1=1 --"] {
        let p = s
            .page_users(
                UserQuery {
                    search: Some(odd.into()),
                    ..UserQuery::default()
                },
                PageRequest::nth(1, 50),
            )
            .await
            .unwrap();
        assert_eq!(p.total, 0, "{odd}");
    }

    // Keys: all, and one user's.
    let all_keys = s.list_api_keys(KeyOwner::All).await.unwrap();
    let p = s
        .page_api_keys(KeyOwner::All, PageRequest::nth(2, 5))
        .await
        .unwrap();
    assert_eq!(p.total, all_keys.len() as u64);
    assert_eq!(ids(&p.items, |k| k.id), ids(&all_keys[5..10], |k| k.id));
    let p = s
        .page_api_keys(KeyOwner::User(users[1].id), PageRequest::nth(1, 5))
        .await
        .unwrap();
    assert_eq!((p.total, p.items[0].user_id), (1, Some(users[1].id)));

    // Transfers: one agent's, newest first.
    for n in 1..=7 {
        s.transfer_quota(a1.id, users[0].id, n * 10).await.unwrap();
    }
    let p = s
        .page_transfers(Some(a1.id), PageRequest::nth(1, 3))
        .await
        .unwrap();
    assert_eq!(p.total, 7);
    assert_eq!(
        p.items.iter().map(|t| t.amount).collect::<Vec<_>>(),
        [70, 60, 50]
    );
    assert_eq!(
        s.page_transfers(Some(a2.id), PageRequest::nth(1, 3))
            .await
            .unwrap()
            .total,
        0
    );

    // Audit: newest first, filtered by an action prefix.
    for (i, action) in ["user.create", "user.delete", "key.create", "user_x.odd"]
        .iter()
        .cycle()
        .take(10)
        .enumerate()
    {
        s.append_audit(AuditEntry {
            actor: "admin".into(),
            action: (*action).into(),
            object_type: "thing".into(),
            object_id: i.to_string(),
            detail: serde_json::json!({ "n": i }),
        })
        .await
        .unwrap();
    }
    let p = s
        .page_audit(AuditQuery::default(), PageRequest::nth(1, 4))
        .await
        .unwrap();
    assert_eq!(p.total, 10);
    assert_eq!(
        p.items
            .iter()
            .map(|e| e.object_id.as_str())
            .collect::<Vec<_>>(),
        ["9", "8", "7", "6"]
    );
    let p = s
        .page_audit(
            AuditQuery {
                action: Some("user.".into()),
            },
            PageRequest::nth(2, 2),
        )
        .await
        .unwrap();
    // user.create at 0, 4, 8 and user.delete at 1, 5, 9 (not user_x: `_` is literal).
    assert_eq!(p.total, 6);
    assert_eq!(
        p.items
            .iter()
            .map(|e| e.object_id.as_str())
            .collect::<Vec<_>>(),
        ["5", "4"]
    );
}

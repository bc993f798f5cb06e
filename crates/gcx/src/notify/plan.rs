//! Topics spread over channels: at most [`MAX_TOPICS_PER_CHANNEL`] per channel and at
//! most [`MAX_CHANNELS`] channels. More is refused before anything is sent: a 21st
//! channel would evict one of our own (the server removes the one used least recently),
//! and the caller learns how many users fit instead.

use std::collections::BTreeSet;

use gcx_protocol::genesys_notifications::{MAX_CHANNELS, MAX_TOPICS_PER_CHANNEL, UserTopic};

use super::error::NotifyError;

/// The channels `topics` need, each a list of topics: duplicates dropped, sorted by user
/// then kind (a user's topics sit together), cut into chunks of the per-channel limit.
pub fn split(topics: Vec<UserTopic>) -> Result<Vec<Vec<UserTopic>>, NotifyError> {
    split_with(topics, MAX_TOPICS_PER_CHANNEL, MAX_CHANNELS)
}

/// [`split`] with other limits.
pub fn split_with(
    topics: Vec<UserTopic>,
    per_channel: usize,
    max_channels: usize,
) -> Result<Vec<Vec<UserTopic>>, NotifyError> {
    let topics: BTreeSet<UserTopic> = topics.into_iter().collect();
    if topics.is_empty() {
        return Err(NotifyError::NoTopics);
    }
    let per_channel = per_channel.max(1);
    let max_topics = per_channel.saturating_mul(max_channels);
    if topics.len() > max_topics {
        let users: BTreeSet<_> = topics.iter().map(|t| t.user_id).collect();
        // The kinds asked per user: the most any user has (usually all have the same).
        let mut per_user = 0;
        let mut iter = topics.iter().peekable();
        while let Some(first) = iter.next() {
            let mut n = 1;
            while iter.next_if(|t| t.user_id == first.user_id).is_some() {
                n += 1;
            }
            per_user = per_user.max(n);
        }
        return Err(NotifyError::TooManyTopics {
            topics: topics.len(),
            users: users.len(),
            per_user,
            users_fit: max_topics / per_user.max(1),
            max_topics,
            per_channel,
            max_channels,
        });
    }
    let topics: Vec<UserTopic> = topics.into_iter().collect();
    Ok(topics.chunks(per_channel).map(<[_]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcx_protocol::genesys_notifications::UserTopicKind;
    use uuid::Uuid;

    fn topics(users: u128, kinds: &[UserTopicKind]) -> Vec<UserTopic> {
        (0..users)
            .flat_map(|u| {
                kinds.iter().map(move |&kind| UserTopic {
                    user_id: Uuid::from_u128(u + 1),
                    kind,
                })
            })
            .collect()
    }

    #[test]
    fn topics_fill_channels_of_a_thousand_in_user_order() {
        let got = split(topics(2_500, &[UserTopicKind::Presence])).unwrap();
        let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(got[1][0].user_id, Uuid::from_u128(1001));
    }

    #[test]
    fn duplicates_count_once() {
        let mut t = topics(3, &UserTopicKind::ALL);
        t.extend(topics(3, &UserTopicKind::ALL));
        assert_eq!(split(t).unwrap(), [topics(3, &UserTopicKind::ALL)]);
    }

    #[test]
    fn exactly_twenty_thousand_topics_take_twenty_channels() {
        let got = split(topics(20_000, &[UserTopicKind::RoutingStatus])).unwrap();
        assert_eq!(got.len(), MAX_CHANNELS);
        assert!(got.iter().all(|c| c.len() == MAX_TOPICS_PER_CHANNEL));
    }

    #[test]
    fn more_is_refused_saying_how_many_users_fit() {
        let e = split(topics(6_667, &UserTopicKind::ALL)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("20001 topics are more than one OAuth client can watch"),
            "{text}"
        );
        assert!(
            text.contains("with 3 topic(s) per user that is at most 6666 users (6667 asked)"),
            "{text}"
        );
        let e = split_with(topics(5, &[UserTopicKind::Presence]), 2, 2).unwrap_err();
        assert!(e.to_string().contains("at most 4 users (5 asked)"), "{e}");
    }

    #[test]
    fn nothing_to_watch_is_an_error() {
        assert!(matches!(split(Vec::new()), Err(NotifyError::NoTopics)));
    }
}

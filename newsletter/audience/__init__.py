"""The audience: subscribers, lists, who may receive, import/export and unsubscribe tokens."""

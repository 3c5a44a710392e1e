"""Patient identity across the alliance: issuers of patient IDs, resident identity numbers,
and the master patient index that links one person's records of several sites."""

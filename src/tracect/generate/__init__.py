"""Volume generation: masks users have, the overlapping-frame strategies, outputs to look at."""

"""The operator's tools: the engage CLI, doctor, the milter probe and Postfix config reading."""

"""What a user passes into a run: actions (Action, RunContext), scenarios/ and remedies/."""

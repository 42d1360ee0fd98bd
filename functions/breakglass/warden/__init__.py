"""Break glass and time-boxed exceptions (BreakGlassFunction and `stagewarden breakglass` / `stagewarden exception`)."""

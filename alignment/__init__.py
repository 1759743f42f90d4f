"""Pure geometry for aligning a new depth map to existing geometry and merging points."""

"""Alert rules, matching, rendering and delivery."""

"""Speaking: text cut into speakable units and synthesized by a Piper voice, a window at a time."""

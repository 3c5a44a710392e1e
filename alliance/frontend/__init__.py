"""Third-party browser code: npm installs it from package-lock.json, Django serves its dist."""

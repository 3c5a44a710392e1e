"""Correcting stored studies the IHE IOCM way: edit, merge, split, move, reject."""

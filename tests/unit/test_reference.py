"""The README's configuration reference is the schema's, word for word."""
import os

from dpd import reference

README = os.path.join(os.path.dirname(__file__), '..', '..', 'README')


def test_readme_reference_is_generated_from_the_schema():
    with open(README) as f:
        text = f.read()
    inside = text.split(reference.START, 1)[1].split(reference.END, 1)[0]
    assert inside.strip() == reference.markdown().strip(), \
        'run: python3 -m dpd.reference --update README'

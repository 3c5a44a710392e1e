import pytest

from .conftest import api_client_for

pytestmark = pytest.mark.django_db


def test_me_names_the_active_institution(world):
    response = api_client_for(world.alice).get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["active_institution"]["code"] == "north-clinic"
    assert response.json()["roles"] == ["clinic_technician"]

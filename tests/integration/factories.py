"""Label configs and small value types shared by the integration tests."""

from __future__ import annotations

from dataclasses import dataclass

from labelplan.labelstudio import LabelStudioClient

TEXT_CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="label" toName="text" choice="single">
    <Choice value="cat"/><Choice value="dog"/><Choice value="bird"/>
  </Choices>
</View>
"""

IMAGE_CONFIG = """
<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image">
    <Label value="car"/><Label value="bicycle"/>
  </RectangleLabels>
  <Choices name="scene" toName="image"><Choice value="day"/><Choice value="night"/></Choices>
</View>
"""


@dataclass(frozen=True)
class Member:
    email: str
    user_id: int
    client: LabelStudioClient

"""Texts of the generated demo stream. ``{brand}`` is the demo brand; everything is
fictional (example.* links, made-up handles).

The crisis texts are unambiguously negative, in English and Chinese, so that a real
sentiment model labels them negative; the chatter is mostly positive or neutral with a
little mild grumbling, as a brand's normal day looks.
"""

from __future__ import annotations

MODELS = ("X2", "X2 Pro", "Air 5", "Fold 3", "Buds")

CHATTER_POSITIVE_EN = (
    "Loving the camera on my new {brand} {model}, night shots are unreal",
    "{brand} {model} battery easily lasts two days, really impressed",
    "Switched to a {brand} {model} last month and honestly no regrets",
    "The {brand} {model} screen is gorgeous outdoors, great job {brand}",
    "Big thanks to {brand} support, they swapped my {model} case in a day",
    "{brand} {model} update made everything feel snappier, nice",
)
CHATTER_NEUTRAL_EN = (
    "Anyone know when the {brand} {model} software update drops?",
    "Thinking about getting a {brand} {model}, what do people think?",
    "{brand} event is on Thursday, curious what they announce",
    "Is the {brand} {model} worth it over last year's model?",
    "Comparing the {brand} {model} with a couple of other phones this weekend",
    "Which case do you use for the {brand} {model}?",
)
CHATTER_MILD_NEGATIVE_EN = (
    "{brand} support kept me on hold for forty minutes today, not great",
    "The {brand} {model} scratches a bit too easily for my taste",
    "Wish {brand} still shipped a charger in the box",
    "My {brand} {model} lags a little after the last update, meh",
)
CHATTER_ZH = (
    "{brand} {model}的拍照效果真不错，夜景很清楚",
    "有人用过{brand}手机吗？值得买吗",
    "{brand}新品发布会什么时候开？",
    "用了一个月{brand} {model}，续航挺好的，喜欢",
    "{brand}客服回复有点慢，希望改进",
)
NOISE_EN = (
    "Dark {brand} clouds rolling over the bay this morning, storm incoming",
    "Watching cumulonimbus towers build over the hills, amazing sky today",
)

# The complaint that goes viral.
CRISIS_ORIGINAL = (
    "My {brand} X2 caught fire while charging last night. The battery swelled, melted the "
    "cable and scorched my desk. I could have been asleep. This is dangerous. Photos: "
    "https://img.example/{slug}-x2-fire-1.jpg"
)
CRISIS_POSTS_EN = (
    "{brand} X2 battery caught fire while charging. This is dangerous, {brand} must recall the X2",
    "Same here: my {brand} X2 got burning hot on the charger and started smoking. Terrible",
    "Stop charging your {brand} X2 overnight. Battery fires are being reported everywhere",
    "{brand} X2 battery fire reports keep piling up and {brand} says nothing. Awful",
    "I want a refund now. Not keeping a {brand} phone that can burn my house down",
    "{brand} is ignoring the X2 fire reports. Worst customer support ever, refund now",
    "Scared to charge my {brand} X2 after seeing those fire photos. {brand} must recall it",
    "Another {brand} X2 caught fire, this time in a kid's bedroom. This is outrageous",
)
CRISIS_REPLIES_EN = (
    "This is dangerous, {brand} must recall the X2",
    "Refund now. This is unacceptable",
    "Horrible and dangerous. Hope you are okay. {brand} needs to answer for this",
    "Exactly what happened to my brother's X2. Dangerous junk",
    "Awful. Filing a complaint with consumer protection today",
    "Terrible and terrifying. Never buying {brand} again",
    "Disgusting that {brand} still has not said anything about the fires",
)
CRISIS_REDDIT_ROOT = (
    "PSA: {brand} X2 batteries are catching fire while charging, multiple reports with "
    "photos. Stop charging overnight"
)
CRISIS_REDDIT_COMMENTS = (
    "Mine got dangerously hot yesterday, returning it and demanding a refund",
    "Class action lawsuit incoming. {brand} must have known about this",
    "Terrible. My X2 smelled like burning plastic last week",
    "This is why I am furious with {brand}, their support just ignores fire reports",
    "Dangerous product, {brand} should recall every X2 right now",
)
CRISIS_ZH = (
    "退款！{brand}手机充电起火太危险了",
    "{brand} X2充电时电池起火，差点烧了房子，太可怕了！要求召回退款！",
    "{brand}必须召回X2并退款，这是严重的安全问题，太愤怒了",
    "我的{brand} X2充电也发烫冒烟，垃圾产品，退款！",
    "{brand}客服一直不回应起火的事，太差劲了，简直是骗人",
    "再也不买{brand}了，充电起火太吓人，强烈要求退款",
)
CRISIS_ZH_REPOSTS = (
    "太危险了，{brand}垃圾手机千万别充电过夜",
    "转发提醒，{brand} X2起火太可怕了，赶紧退款",
    "愤怒！{brand}必须给个说法，退款！",
    "垃圾{brand}，退款！",
)
CRISIS_NEWS_EN = (
    "Reports are spreading of {brand} X2 phones catching fire while charging. {brand} has "
    "not commented; angry users demand a recall and refunds",
    "{brand} X2 battery fires: dozens of owners report phones burning while charging, "
    "safety regulators are being urged to act",
)
CRISIS_NEWS_ZH = (
    "【{brand} X2充电起火事件持续发酵】多地用户反映手机充电时起火，网友愤怒要求召回退款。",
)

HANDLE_HEADS = (
    "amber",
    "birch",
    "cedar",
    "delta",
    "ember",
    "fable",
    "gale",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lumen",
    "maple",
    "nova",
    "onyx",
    "pixel",
    "quill",
    "raven",
    "sable",
    "tundra",
    "umber",
    "violet",
    "willow",
    "xeno",
    "yarrow",
    "zephyr",
)
HANDLE_TAILS = (
    "fox",
    "owl",
    "lane",
    "byte",
    "rider",
    "smith",
    "wave",
    "field",
    "stone",
    "bloom",
    "runner",
    "maker",
    "bear",
    "finch",
    "hart",
    "moss",
)
NEWS_HANDLES = (
    "technewsdaily",
    "gadgetwire",
    "consumerwatch",
    "thephonereview",
    "科技日报速递",
    "数码观察",
    "mobilebeat",
    "safetyfirstnews",
)

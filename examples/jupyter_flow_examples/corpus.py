"""Generated contract clauses in English and Chinese, labelled, for training the demo
clause classifier: templates per label and language with alternatives and slots."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

__all__ = ["CLAUSE_LABELS", "clause_sentences"]

CLAUSE_LABELS = ["payment", "termination", "liability", "confidentiality", "force_majeure", "other"]


# -- generated contract clauses -----------------------------------------------------------
# Templates per label and language. `[a|b|]` picks one alternative (an empty one makes the
# part optional); `{slot}` takes a value from the slot table of the language.
_EN_SLOTS: dict[str, list[str]] = {
    "P": ["the Supplier", "the Customer", "the Client", "the Contractor", "the Licensor", "the Licensee", "the Company",
          "the Service Provider", "the Buyer", "the Seller", "the Consultant", "the Vendor"],
    "doc": ["this Agreement", "this Contract", "the Agreement", "these Terms", "this Framework Agreement"],
    "d": ["7 days", "ten days", "14 days", "fifteen days", "30 days", "thirty (30) days", "45 days", "60 days",
          "sixty days", "90 days", "ninety days", "120 days", "180 days"],
    "m": ["three months", "six months", "twelve months", "12 months", "eighteen months", "twenty-four months", "36 months"],
    "y": ["two years", "three years", "five years", "seven years", "ten years"],
    "city": ["Paris", "New York", "Singapore", "Dublin", "Frankfurt", "Amsterdam", "Geneva", "Manchester", "Hong Kong"],
    "law": ["England and Wales", "the State of New York", "Singapore", "Ireland", "Germany", "Switzerland", "Scotland"],
    "company": ["Acme Holdings Ltd.", "Globex Corporation", "Initech GmbH", "Umbrella Services LLC", "Fabrikam Inc.",
                "Tailspin Logistics Ltd.", "Blue Yonder Systems plc", "Litware Consulting B.V.", "Adatum Health SA"],
    "date": ["1 January 2023", "15 April 2022", "30 June 2025", "2 September 2021", "the date of signature", "the Effective Date"],
    "money": ["EUR 10,000", "USD 250,000", "GBP 48,500", "EUR 1,000,000", "USD 5,000,000", "GBP 75,000"],
    "fm": ["fire, flood, earthquake, war, riot or terrorism", "natural disasters, pandemics, strikes and power failures",
           "acts of God, epidemic, government action or civil unrest", "storm, explosion, sabotage, embargo or labour disputes"],
    "pct": ["two per cent", "three per cent", "4%", "eight per cent", "1.5% per month"],
    "title": ["SOFTWARE LICENCE AGREEMENT", "CONSULTING AGREEMENT", "DATA PROCESSING AGREEMENT", "FRAMEWORK SUPPLY AGREEMENT",
              "SERVICE LEVEL AGREEMENT", "SUBSCRIPTION AGREEMENT", "PROFESSIONAL SERVICES CONTRACT", "DISTRIBUTION AGREEMENT"],
}
_EN_HEADINGS: dict[str, list[str]] = {
    "payment": ["Payment", "Fees", "Fees and Payment", "Invoicing", "Charges", "Payment Terms", "Price", "Expenses"],
    "termination": ["Termination", "Term", "Term and Termination", "Duration", "Renewal", "Expiry", "Effect of Termination"],
    "liability": ["Liability", "Limitation of Liability", "Indemnity", "Indemnification", "Damages", "Insurance"],
    "confidentiality": ["Confidentiality", "Confidential Information", "Non-Disclosure", "Secrecy"],
    "force_majeure": ["Force Majeure", "Events Beyond Control", "Force Majeure Events"],
    "other": ["Governing Law", "Jurisdiction", "Notices", "Definitions", "Assignment", "Entire Agreement", "Severability",
              "Amendments", "Changes", "Change Control", "Variation", "Modifications", "Waiver", "Counterparts", "Dispute Resolution", "Services", "Scope of Services",
              "Intellectual Property", "Data Protection", "Relationship of the Parties", "General", "Interpretation"],
}
_EN: dict[str, list[str]] = {
    "payment": [
        "{P} shall pay [each|every|all|the] [undisputed |valid |correct |][invoice|invoices] within {d} [of|from|after] [the date of |][receipt|issue|the invoice date].",
        "[The Fees|All fees|The charges|The price|The subscription fee] [are|is] [payable|due] [monthly|quarterly|annually|yearly] in [advance|arrears][ by bank transfer| in euros| in pounds sterling|].",
        "Invoices [are|will be] issued [monthly|at the end of each month|on completion of each milestone] and [are|shall be] payable within {d}.",
        "Late payments [shall |will |]bear interest at {pct} [per annum |]above the [base rate|prime rate|reference rate][ until paid in full|].",
        "[Interest|A late payment charge] of {pct} [accrues|applies] on [any|all] [overdue|unpaid|late] [amounts|sums|payments].",
        "All amounts [stated|payable] under {doc} are exclusive of [VAT|value added tax|sales tax], which {P} shall pay in addition.",
        "{P} may withhold payment of any [amount|invoice|sum] [it disputes in good faith|that is disputed] [until the dispute is resolved|pending resolution].",
        "The [Fees|prices|rates] [are|shall be] fixed for the first {m} and may [then |thereafter |]be [increased|adjusted] [once a year |annually |]by no more than [the rate of inflation|{pct}].",
        "{P} shall reimburse [reasonable |pre-approved |][travel |out-of-pocket |]expenses within {d} of [receiving|receipt of] [an invoice|receipts].",
        "Payment [shall be|is to be] made [by bank transfer|by direct debit|by cheque] to the account [named|designated] by {P}[ without set-off or deduction|].",
        "If {P} fails to pay [any amount|an invoice] [when due|on time], {P} may charge interest [on the overdue amount |]and [recover its collection costs|suspend delivery until payment is received].",
        "[The total price|The contract price|The purchase price] [is|shall be] {money}, payable in [two|three|four] [instalments|equal instalments].",
        "Payment terms are [net 30|net 60|net 90|{d} from invoice|{d} end of month].",
        "[A deposit|An advance payment] of [twenty|thirty|fifty] per cent of the [price|Fees] is [due|payable] on signature and the balance on delivery.",
        "{P} shall [submit|send] [an invoice|invoices] [monthly|quarterly] in [arrears|advance], [itemising|showing] the [hours worked|Services provided] and the [charges|Fees].",
        "[No|Any] payment [made |]by {P} [shall be|is not] [deemed|taken as] acceptance of [defective|the] [goods|Services|work].",
        "{P} shall pay [all|the] [Fees|amounts] [due|owed] under {doc} in full, without [any |]deduction [or withholding |]for taxes.",
    ],
    "termination": [
        "Either party may terminate {doc} by giving [not less than |at least |]{d}[ prior|] written notice to the other[ party|].",
        "{doc} [commences|starts|begins] on {date} and [continues|runs|remains in force] for [an initial term of |a period of |]{m}[ unless terminated earlier|].",
        "{doc} [shall|will] [automatically |]renew for [successive|further] periods of {m} unless either party gives notice [of non-renewal |]at least {d} before [the end of the term|expiry].",
        "{doc} [will|shall] not renew [automatically|by itself]; [any extension|a renewal] [requires|needs] the written agreement of [both parties|the parties].",
        "{P} may terminate {doc} [immediately|with immediate effect] [by written notice |]if the other party [commits a material breach|becomes insolvent|enters into liquidation][ that is not remedied within {d}|].",
        "{P} may terminate {doc} [for convenience |]at any time [without notice|without giving reasons|without cause][ and without liability| and without paying compensation|].",
        "On [termination|expiry] of {doc}, {P} shall [return|delete] all [materials|data|documents] [and pay all sums due|within {d}].",
        "Termination [of {doc} |]does not affect [any rights|the accrued rights and remedies] of [either party|the parties] [accrued before termination|as at the date of termination].",
        "{doc} [expires|ends] [automatically |]on [{date}|the last day of the initial term] unless [extended|renewed] by [mutual|written] agreement.",
        "[Either party|{P}] may [end|cancel|terminate] {doc} on [one month's|three months'|{d}] notice [in writing|].",
        "Clauses [that by their nature|which are intended to] survive [termination|expiry] [shall|will] [remain|continue] in [force|effect].",
        "The [initial |]term of {doc} is {m}, after which it [continues|rolls over] from [month to month|year to year] until terminated [by either party |]on {d} notice.",
        "{P} may [suspend or |]terminate {doc} if the other party [breaches|fails to comply with] [any material term|its obligations] and does not [remedy|cure] the breach within {d}[ of notice|].",
        "[Upon|On] termination for any reason, the licences granted under {doc} [end|terminate] [immediately|at once].",
        "{doc} [shall|will] [be renewed|renew] [automatically|tacitly] [each year |]unless terminated [by either party |]in writing.",
    ],
    "liability": [
        "[Each party's|{P}'s] [total |aggregate |]liability [under|arising out of|in connection with] {doc} [shall not|will not|does not] exceed [the Fees paid|the amounts paid|{money}][ in the preceding {m}| under {doc}| in any contract year|].",
        "Neither party [shall be|is] liable for [any |]indirect, [special |incidental |]or consequential [loss|losses|damages][, including loss of profit|, loss of revenue|].",
        "Nothing in {doc} [limits|excludes] [either party's |]liability for death or personal injury caused by [its |]negligence[, or for fraud|].",
        "{P} shall indemnify the other party [against|from] [all|any] [claims|losses|costs] [arising from|caused by] [its breach of {doc}|its negligence|infringement of third-party rights].",
        "{P} shall [defend, |]indemnify and hold harmless [the other party|its affiliates] [from and against|against] [any and all|all] [claims, damages and expenses|liabilities][ whatsoever| howsoever arising|].",
        "{P} [shall|will] be liable [without limit|in full] for [all|any] [losses|damages] [caused by|resulting from] [its breach|its wilful misconduct|its gross negligence].",
        "{P} [accepts|shall bear] unlimited liability for [all|any] [damage|losses|claims] [arising under {doc}|caused by its personnel].",
        "The [limitations|exclusions] [of liability |]in this clause do not apply to [fraud|wilful misconduct|breach of confidentiality].",
        "{P} [shall maintain|maintains] [professional indemnity|public liability] insurance of at least {money} [per claim|in aggregate].",
        "[Damages|Compensation] for [any |]breach [of {doc} |]shall be limited to [direct loss|the value of the order|the Fees paid].",
        "{P} is responsible for [any |all ]loss or damage [caused by|resulting from] its [negligence|breach of {doc}|failure to perform].",
        "[An|Each] indemnified party shall notify the indemnifying party of any claim [promptly|within {d}] and allow it to conduct the defence.",
        "[{P}|Neither party] [shall|will] [not |]be liable [to the other party |]for [loss of data|loss of profits|business interruption] [however caused|in any circumstances].",
    ],
    "confidentiality": [
        "[Each party|{P}] shall keep the other party's [Confidential Information|confidential information] [secret|confidential|strictly confidential][ and not disclose it to any third party|][ for {y} after {doc} ends| during the term|].",
        "[{P}|The receiving party] shall not disclose [any |]confidential information [of|received from] the disclosing party [without its prior written consent|to any person].",
        "Confidential Information [means|includes] [all|any] [information|data|know-how] [of a confidential nature |]disclosed by [one party|either party][ to the other|][ in any form| whether oral or written|].",
        "The [obligations|duties] of confidentiality [shall |]survive [termination|expiry] of {doc} [for {y}|indefinitely|in perpetuity].",
        "[This clause|These obligations] [does|do] not apply to information that [is|becomes] [publicly available|in the public domain][ otherwise than through a breach of {doc}|].",
        "[{P}|Each party] may disclose Confidential Information [to its employees and advisers who need to know it|where required by law|to a court or regulator].",
        "On request, [the receiving party|{P}] shall [return|destroy] all [documents|copies] containing Confidential Information.",
        "[Neither party|{P}] shall [use|exploit] the other party's [trade secrets|proprietary information|confidential information] [except to perform {doc}|for any other purpose].",
        "[Each party|The parties] shall [treat|hold] [the terms of {doc}|all non-public information] [as confidential|in confidence][ and protect it with reasonable care|].",
        "[Each party|{P}] [shall|will] keep [secret|confidential] [for {y}|perpetually|forever|indefinitely] [all information|all data] [obtained|received] [under {doc}|during the negotiations].",
        "[{P}|Each party] shall [protect|safeguard] the other party's [Confidential Information|proprietary data] with at least [the same|a reasonable] degree of care [as it uses for its own|].",
    ],
    "force_majeure": [
        "Neither party [shall be|is] [liable|responsible] for [any |][delay|failure|delay or failure] [in performing|to perform] [its obligations |]caused by [events|circumstances] beyond its reasonable control[, including {fm}|].",
        "[A party|The affected party] [affected by|claiming] [an event of |]force majeure shall notify the other [party |][promptly|without delay|within {d}] and [use reasonable efforts to|try to] [mitigate|minimise] its effects.",
        "If a force majeure event [continues|lasts] for more than {d}, either party may terminate {doc} [by written notice|on notice].",
        "Force majeure [means|includes] [any event|an event] beyond [a party's|the affected party's] reasonable control, such as {fm}.",
        "[The performance|The obligations] of the affected party [shall be|are] suspended [for as long as|while] the [force majeure event|event] continues.",
        "[Acts of God|Natural disasters], {fm} [excuse|suspend] [performance|the obligations] of [the affected party|either party] for [their duration|as long as they last].",
        "[Delays|Failures] [caused by|due to] {fm} [shall not be|are not] [a breach of {doc}|treated as a default] [by the affected party|].",
    ],
    "other": [
        "{doc} [is|shall be] governed by [and construed in accordance with |]the laws of {law}[, and the courts of {city} have exclusive jurisdiction|].",
        "[Any|All] disputes arising [out of|under] {doc} [shall be|are] [settled|resolved] by arbitration in {city} under the [ICC|LCIA|UNCITRAL] Rules.",
        "The courts of {city} [shall |]have [exclusive|non-exclusive] jurisdiction over any dispute [arising out of|in connection with] {doc}.",
        "[Any notice|Notices] [under|given under] {doc} [must|shall] be [in writing|given in writing] and [delivered by hand|sent by recorded post|sent by email] to the [address|registered office] [stated in {doc}|notified by the recipient|of the recipient].",
        "A notice is [deemed|treated as] received [two business days after posting|on delivery|when sent by email].",
        "In {doc}, \"[Services|Deliverables|Business Day|Specification]\" means [the services described in Schedule 3|the work products listed in the Statement of Work|a day other than a weekend or public holiday|the requirements set out in the Order].",
        "[In {doc}|In these Terms], \"[Fees|Charges]\" means the [amounts|prices] stated in the [Order Form|price list|Statement of Work], and \"[Order|Project]\" means [a purchase order|a request] [accepted by {P}|issued under {doc}].",
        "{P} shall [provide|perform] the [Services|Deliverables] [with reasonable skill and care|in a professional manner|in accordance with the Specification][ and in accordance with good industry practice|].",
        "{P} shall [perform|deliver] the Services [at the locations|on the dates] set out in [Schedule 1|Schedule 4|the Statement of Work].",
        "No [amendment|variation|change] to {doc} [is|shall be] [effective|valid|binding] unless [it is |]in writing and signed by [both parties|the authorised representatives of the parties].",
        "{P} may [amend|change|update|vary] [these terms|{doc}|the Fees|its prices|the service description] [at any time|from time to time] [at its sole discretion|without the consent of the other party|by posting a new version on its website|by giving notice].",
        "[Neither party|{P}] may [assign|transfer|subcontract] [any of its rights|its rights or obligations] under {doc} without the prior written consent of the other party.",
        "{doc} [constitutes|contains] the entire agreement between the parties and supersedes all [prior|previous] [agreements|understandings|negotiations][ relating to its subject matter|].",
        "If any provision of {doc} is [held|found] [invalid|unenforceable], the [remaining provisions|rest of {doc}] [shall |]remain in full force and effect.",
        "[No failure|A failure or delay] [to exercise|in exercising] any right [shall operate as|is] a waiver of it.",
        "{doc} may be [executed|signed] in [any number of |]counterparts, each of which is an original.",
        "This [{title_case}|Contract|Agreement] [(the \"Agreement\") |]is [made|entered into|dated] [on {date} |]between {company}, a company [registered|incorporated] in {law}[ (the \"Supplier\")|], and {company}[ (the \"Customer\")| (the \"Client\")|].",
        "{title}",
        "[Signed|Executed] [by|for and on behalf of] [{company}|the Licensor|the Contractor]: ____________[ Date: ________| Name: ________|]",
        "IN WITNESS WHEREOF the parties have [signed|executed] {doc} on the date first written above.",
        "WHEREAS {P} [wishes to|intends to] [obtain|purchase] [consulting|software|logistics] services and the other party [is willing to|agrees to] provide them.",
        "All intellectual property rights in the [Deliverables|software|materials] [remain with|vest in] {P}.",
        "Nothing in {doc} creates a [partnership, joint venture or agency|relationship of employment] between the parties.",
        "Each party shall comply with [applicable data protection laws|the GDPR] when [processing|handling] personal data under {doc}.",
        "Headings in {doc} are for convenience only and do not affect its interpretation.",
        "The Schedules [form part of|are incorporated into] {doc}[ and have effect as if set out in full|].",
        "{P} shall [obtain|maintain] all [licences|permits|consents] [needed|required] to [perform|provide] the Services.",
    ],
}
_ZH_SLOTS: dict[str, list[str]] = {
    "P": ["甲方", "乙方", "买方", "卖方", "委托方", "受托方", "许可方", "被许可方"],
    "d": ["七日", "十五日", "30日", "三十日", "45天", "60日", "六十日", "90日", "120日", "180天"],
    "m": ["六个月", "十二个月", "一年", "两年", "二十四个月", "三年"],
    "y": ["两年", "三年", "五年", "十年"],
    "city": ["北京市", "深圳市", "广州市", "杭州市", "南京市", "成都市"],
    "money": ["十万元", "五十万元", "一百二十万元", "三百万元"],
    "fm": ["地震、台风、洪水", "火灾、战争、罢工", "疫情、政府行为", "自然灾害、社会动乱"],
    "company": ["深圳蓝海软件有限公司", "杭州云帆信息技术有限公司", "广州华信贸易有限公司", "南京智远咨询有限公司"],
    "title": ["软件许可合同", "咨询服务协议", "设备采购合同", "数据处理协议", "技术开发合同", "保密协议书"],
}
_ZH_HEADINGS: dict[str, list[str]] = {
    "payment": ["付款", "付款方式", "费用支付", "价款与支付", "结算"],
    "termination": ["合同期限", "合同解除", "合同终止", "期限与续期", "解除与终止"],
    "liability": ["违约责任", "赔偿", "责任限制", "损害赔偿"],
    "confidentiality": ["保密", "保密条款", "保密义务"],
    "force_majeure": ["不可抗力"],
    "other": ["适用法律", "争议解决", "通知", "定义", "合同变更", "其他", "服务内容", "知识产权", "转让", "生效"],
}
_ZH: dict[str, list[str]] = {
    "payment": [
        "{P}应[在|于]收到[发票|付款通知][之日起|后]{d}内[支付|付清][全部|相应][款项|费用|服务费]。",
        "[逾期付款|迟延付款]的，[每逾期一日|按日]支付[应付|未付]金额[万分之五|千分之一]的[违约金|滞纳金]。",
        "服务费[按月|按季度|每年]结算，{P}应[以银行转账方式|通过银行转账]支付至对方指定账户。",
        "合同总价款为人民币{money}[（含税）|，含增值税|]，分[两|三]期支付。",
        "[本合同|上述]价款不含增值税，增值税由{P}另行承担。",
        "{P}应在合同签订后{d}内支付[预付款|定金][百分之三十|百分之二十]，余款在[验收合格后|交付后]{d}内付清。",
        "对[发票|付款金额]有争议的，{P}可暂缓支付有争议部分，[直至|待]争议解决。",
        "{P}应[每月|每季度]向对方开具[增值税专用发票|正式发票]，对方收到发票后{d}内付款。",
    ],
    "termination": [
        "本合同有效期为{m}，自[双方签字盖章之日|生效日]起[计算|生效]。",
        "任何一方[可以|有权]提前{d}书面通知对方[解除|终止]本合同。",
        "期满前{d}内任何一方未提出异议的，本合同自动[续期|续约|延续]{m}。",
        "本合同期满后[不|不会]自动续期，[续期|延期]须经双方[书面|另行]协商一致。",
        "{P}严重违约[且|并]在{d}内未予纠正的，对方有权[立即|书面通知]解除本合同。",
        "{P}[可以|有权]随时解除本合同，[无需|不必]提前通知对方[，且不承担任何责任|]。",
        "合同[解除|终止]后，{P}应[返还|销毁]全部资料[并结清应付款项|]。",
        "本合同[终止|解除]不影响双方在终止前已经产生的权利和义务。",
    ],
    "liability": [
        "任何一方[违反本合同约定|违约]的，应[赔偿|承担]对方因此[遭受|造成]的[全部|直接]损失。",
        "{P}在本合同项下的[赔偿|]责任总额不超过[本合同总价款|已支付的费用|{money}]。",
        "任何一方均不对[间接损失|可得利益损失|利润损失]承担[赔偿|]责任。",
        "{P}应[承担|负]无限[连带|]责任，[赔偿|补偿]对方的全部损失[、费用和开支|]。",
        "{P}应[就|对]任何[第三方|]索赔[、损失和费用|]向对方[承担|作出]赔偿[，无论其因何产生|]。",
        "因{P}[过错|故意或重大过失]造成[损失|损害]的，由{P}承担赔偿责任。",
        "违约方应向守约方支付合同总价款[百分之十|百分之二十]的违约金[，并赔偿实际损失|]。",
    ],
    "confidentiality": [
        "双方应对[在履行本合同过程中|因本合同]知悉的[对方|另一方]的[商业秘密|保密信息|技术信息]承担保密义务[，保密期限为{y}|]。",
        "未经[对方|另一方][书面|事先书面]同意，任何一方不得向第三方[披露|泄露]保密信息。",
        "保密信息是指[一方|披露方]以任何形式[提供|披露]的[技术信息|经营信息|数据]。",
        "本条[约定的|]保密义务在本合同[终止|解除]后[{y}内|永久|继续]有效。",
        "[接收方|{P}]仅可将保密信息用于履行本合同[之目的|]，不得用于其他[用途|目的]。",
        "[法律法规|监管机构]要求披露的信息不受本条限制，但{P}应及时通知对方。",
    ],
    "force_majeure": [
        "因{fm}等不可抗力[事件|]导致[不能履行|延迟履行]本合同的，[受影响的一方|该方]不承担[违约|]责任。",
        "[遭受|受]不可抗力影响的一方应在{d}内[书面|]通知对方，并提供[有关|相应]证明。",
        "不可抗力[事件|]持续超过{d}的，任何一方有权解除本合同。",
        "不可抗力是指[不能预见、不能避免并不能克服的客观情况|双方无法控制的事件]，[包括|例如]{fm}。",
    ],
    "other": [
        "本合同[适用|受]中华人民共和国法律[管辖|]，[因本合同引起的|有关]争议[提交{city}仲裁委员会仲裁|由{city}有管辖权的人民法院管辖]。",
        "[本合同项下的|]通知应以书面形式[送达|发送至]对方[在本合同中|]载明的地址[或电子邮箱|]。",
        "[本合同|合同]未尽事宜，由双方另行协商[并签订补充协议|]。",
        "对本合同的[任何|]修改[或补充|]须[经双方|以书面形式]签字[盖章|]后生效。",
        "{P}有权[随时|自行决定][单方面|]修改本合同[条款|内容|价格]，[修改后即|并在其网站公布后]生效。",
        "本合同一式[两|四]份，双方各执[一|两]份，具有同等法律效力。",
        "[委托方|买方]：{company}。[受托方|卖方]：{company}。双方[经协商|经友好协商]，[订立|签订]本合同。",
        "{title}",
        "[授权代表|法定代表人]（签字）：__________ 日期：__________",
        "{P}应[按照|依照]附件[二|三]的要求[提供|完成]服务[，并保证服务质量|]。",
        "本合同所称[交付物|产品|系统]是指附件[三|四]所列的[内容|成果|设备]。",
        "未经对方书面同意，任何一方不得[转让|转包]本合同项下的权利义务。",
        "本合同自双方签字盖章之日起生效。",
        "[本合同项下|履行本合同]产生的知识产权归{P}所有。",
    ],
}
_TEMPLATES = {"en": (_EN, _EN_SLOTS, _EN_HEADINGS), "zh": (_ZH, _ZH_SLOTS, _ZH_HEADINGS)}
_ZH_NUMBERS = "一二三四五六七八九十"


_UNHEADED = ("{title}", "This [", "[Signed", "IN WITNESS", "WHEREAS", "[委托方", "[授权代表")
_CHOICE = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")


def _zh_number(n: int) -> str:
    tens, ones = divmod(n, 10)
    return ("" if tens == 0 else ("十" if tens == 1 else _ZH_NUMBERS[tens - 1] + "十")) + ("" if ones == 0 else _ZH_NUMBERS[ones - 1])


def _expand(template: str, slots: dict[str, list[str]], rng: random.Random) -> str:
    titles = slots.get("title", [""])

    def slot(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "title_case":
            return rng.choice(titles).title()
        return rng.choice(slots[name])

    text = _CHOICE.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    text = re.sub(r"\s+", " ", _SLOT.sub(slot, text)).strip()
    return text[:1].upper() + text[1:]


def _heading(label: str, language: str, headings: dict[str, list[str]], rng: random.Random) -> str:
    """A clause number and heading in one of the usual styles, or none."""
    n, head = rng.randint(1, 24), rng.choice(headings[label])
    if language == "zh":
        return rng.choice([f"第{_zh_number(n)}条 {head}。", f"{_zh_number(n)}、{head}：", f"第{_zh_number(n)}条 ", ""])
    return rng.choice([f"{n}. {head}. ", f"Clause {n}. {head}. ", f"{n}.{rng.randint(1, 6)} ", f"{head}: ", f"{n}. {head.upper()}. ", ""])


def clause_sentences(per_label: int = 40, seed: int = 0, *, languages: Sequence[str] = ("en", "zh"),
                     labels: Sequence[str] = CLAUSE_LABELS, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Generated ``(clause, label)`` pairs that read like contract clauses: per label,
    `per_label` sentences in each language, from varied templates with parties, periods,
    amounts and places filled in, usually behind a clause number and heading. The same
    seed gives the same sentences. Sentences in `exclude` are never produced."""
    rng = random.Random(seed)
    banned = {_normal(s) for s in exclude}
    pairs: list[tuple[str, str]] = []
    for language in languages:
        if language not in _TEMPLATES:
            raise ValueError(f"no clause templates in language {language!r} (known: {', '.join(_TEMPLATES)})")
        templates, slots, headings = _TEMPLATES[language]
        for label in labels:
            if label not in templates:
                raise ValueError(f"no clause templates for label {label!r} (known: {', '.join(CLAUSE_LABELS)})")
            made: set[str] = set()
            tries = 0
            while len(made) < per_label and tries < per_label * 50:
                tries += 1
                template = rng.choice(templates[label])
                body = _expand(template, slots, rng)
                text = body if template.startswith(_UNHEADED) else _heading(label, language, headings, rng) + body
                key = _normal(text)
                if key in banned or key in made:
                    continue
                made.add(key)
                pairs.append((text, label))
    rng.shuffle(pairs)
    return pairs


def _normal(text: str) -> str:
    return " ".join(text.lower().split())
